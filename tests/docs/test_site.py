"""The docs site builds strictly, and a broken link or a page left out of the nav fails it;
the configuration reference is generated from the models and cannot drift from them (issue 19)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.docs.blocks import ROOT


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("statusq_docs_hooks", ROOT / "scripts" / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(root / "site")],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of what the site is built from."""
    for name in ("docs", "scripts/docs"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    return tmp_path


def test_the_site_builds_strictly_and_has_the_generated_reference(checkout: Path) -> None:
    done = _build(checkout)
    assert done.returncode == 0, done.stderr
    page = (checkout / "site" / "configuration.html").read_text()
    assert "claim_timeout" in page and "storm_max_retry" in page and "confirm_max_failures" in page


def test_a_broken_link_fails_the_build(checkout: Path) -> None:
    with (checkout / "docs" / "db.md").open("a") as f:
        f.write("\nSee [the missing page](no-such-page.md).\n")
    done = _build(checkout)
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr


def test_a_broken_anchor_fails_the_build(checkout: Path) -> None:
    with (checkout / "docs" / "db.md").open("a") as f:
        f.write("\nSee [a section](configuration.md#no-such-section).\n")
    done = _build(checkout)
    assert done.returncode != 0
    assert "no-such-section" in done.stderr


def test_a_page_missing_from_the_nav_fails_the_build(checkout: Path) -> None:
    (checkout / "docs" / "orphan.md").write_text("# An orphan\n")
    done = _build(checkout)
    assert done.returncode != 0
    assert "orphan.md" in done.stderr


def test_the_config_reference_covers_every_key_of_the_models() -> None:
    hooks = _hooks()
    reference = hooks.config_reference()
    for _, _, model in hooks.SECTIONS:
        for key in hooks._keys(model):
            assert f"| `{key}` |" in reference, key


def test_a_key_without_a_meaning_or_a_meaning_without_a_key_is_refused() -> None:
    # Given the meanings file less one key and plus one the models lack, when generating, then
    # both are named: the reference cannot drift from the code in either direction.
    hooks = _hooks()
    meanings = hooks.load_meanings()
    del meanings["queue"]["claim_timeout"]
    meanings["daemon"]["threads"] = "a key that does not exist"
    with pytest.raises(hooks.ConfigReferenceDrift) as caught:
        hooks.config_reference(meanings)
    assert "queue.claim_timeout: a key of QueueConfig with no meaning" in str(caught.value)
    assert "daemon.threads: a meaning for a key DaemonConfig lacks" in str(caught.value)


def test_the_api_page_documents_exactly_statusq_all() -> None:
    import re

    import statusq

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    documented = re.findall(r"^::: statusq\.(\w+)$", page, flags=re.MULTILINE)
    assert sorted(documented) == sorted(statusq.__all__)


def test_the_readmes_links_lead_to_pages_that_exist() -> None:
    # The README is not part of the site, so --strict does not check it: this does.
    import re

    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert local, "no links found"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing


def test_the_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    first_block = readme[readme.index("```sh") :].splitlines()[1:3]
    assert [line.split("#")[0].strip() for line in first_block] == ["make run", "make test"]
