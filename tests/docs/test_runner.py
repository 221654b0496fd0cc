"""The examples runner itself: a broken example fails, an unexplained block is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from statusq.errors import ConfigError
from tests.docs.blocks import Block, parse, problems
from tests.docs.runner import PageRun

PAGE = """\
# A page

<!-- not-run: a diagram -->
```text
a -> b
```

<!-- not-run:   -->
```text
no reason
```

```
no language
```

```xml
<not-run-and-not-marked/>
```

<!-- file: statusq.toml -->
```toml
[queue]
max_retries = 3
```
"""


def test_directives_and_problems_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    blocks = parse(page)
    assert [b.language for b in blocks] == ["text", "text", "", "xml", "toml"]
    assert blocks[0].not_run == "a diagram"
    assert blocks[4].directives == {"file": "statusq.toml"}
    found = problems(blocks)
    assert len(found) == 3
    assert "not-run without a reason" in found[0]
    assert "without a language" in found[1]
    assert "xml blocks are not run" in found[2]


def _block(language: str, code: str, **directives: str) -> Block:
    return Block("page.md", 1, language, code, directives)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PageRun:
    page = PageRun(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return page


def test_a_toml_block_with_an_unknown_key_fails(run: PageRun) -> None:
    with pytest.raises(ConfigError, match="max_retry"):
        run.run(_block("toml", "[queue]\nmax_retry = 3\n"))


def test_a_site_file_with_bad_xmpp_settings_fails(run: PageRun) -> None:
    with pytest.raises(ConfigError, match="ping_interval"):
        run.run(
            _block(
                "toml",
                '[settings.xmpp]\njid = "bot@example.org"\npassword = "x"\nping_interval = "soon"\n',
                file="sites/example.org.toml",
            )
        )


def test_python_blocks_share_a_namespace_and_a_failing_one_fails(run: PageRun) -> None:
    run.run(_block("python", "answer = 42\n"))
    run.run(_block("python", "assert answer == 42\n"))
    with pytest.raises(NameError):
        run.run(_block("python", "undefined_name\n"))


def test_a_plugin_block_registers_through_the_real_api(run: PageRun) -> None:
    # register() is called with a real PluginApi, so a bad registration fails the page.
    code = "from statusq import QueueHandler\nclass H(QueueHandler):\n    pass\n\ndef register(api):\n"
    run.run(_block("python", code + "    api.register_handler('ok', H)\n"))
    with pytest.raises(Exception, match="time_limt"):
        run.run(_block("python", code + "    api.register_handler('ok', H, time_limt='1s')\n"))


def test_a_shell_block_must_exit_0_and_print_what_it_expects(run: PageRun) -> None:
    run.run(_block("sh", "echo hello\n", expect="hello"))
    with pytest.raises(AssertionError, match="exit 3"):
        run.run(_block("sh", "exit 3\n"))
    with pytest.raises(AssertionError, match="'goodbye' not in its output"):
        run.run(_block("sh", "echo hello\n", expect="goodbye"))


def test_a_shipped_file_shown_whole_must_be_that_file(run: PageRun) -> None:
    with pytest.raises(AssertionError, match=r"differs from conf/statusq\.service"):
        run.run(_block("ini", "[Unit]\n", **{"same-as": "conf/statusq.service"}))
