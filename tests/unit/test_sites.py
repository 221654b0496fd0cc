"""statusq.sites: the site table (one broken file breaks one site) and the current-site context."""

from __future__ import annotations

from pathlib import Path

import pytest

from statusq.config import Config, SiteConfig
from statusq.sites import SiteTable, current_site, site_context


@pytest.fixture
def sites_dir(tmp_path: Path) -> Path:
    path = tmp_path / "sites"
    path.mkdir()
    (path / "example.org.toml").write_text('[settings.demo]\ngreeting = "hello"\n')
    (path / "other.net.toml").write_text("")
    return path


def table(sites_dir: Path, *, require_file: bool = False) -> SiteTable:
    return SiteTable(Config.model_validate({"sites": {"dir": str(sites_dir), "require_file": require_file}}))


def test_sites_are_read_from_the_folder(sites_dir: Path) -> None:
    (sites_dir / "README.md").write_text("not a site")

    sites = table(sites_dir)

    assert sites.names == ["example.org", "other.net"]
    found = sites.lookup("example.org")
    assert found.site is not None
    assert found.site.settings == {"demo": {"greeting": "hello"}}
    assert found.problem is None


def test_a_missing_folder_means_no_site_files(tmp_path: Path) -> None:
    sites = table(tmp_path / "absent")

    assert sites.names == []
    assert sites.lookup("example.org").site == SiteConfig(name="example.org")


def test_a_broken_site_file_breaks_only_that_site(sites_dir: Path) -> None:
    # Given one site file with invalid TOML and one with a wrong value, next to a good one
    (sites_dir / "broken.org.toml").write_text("enabled = \n")
    (sites_dir / "typo.org.toml").write_text("enabeld = true\n")

    # When the table is loaded
    sites = table(sites_dir)

    # Then the broken sites are unavailable, retryably, with the reason; the good one works
    for name, reason in (("broken.org", "not valid TOML"), ("typo.org", "enabeld: unknown key")):
        lookup = sites.lookup(name)
        assert lookup.site is None
        assert lookup.retryable is True
        assert f"site {name!r} has a broken config" in (lookup.problem or "")
        assert reason in (lookup.problem or "")
    assert sites.lookup("example.org").site is not None
    assert "broken.org" not in sites.names


def test_a_disabled_site_is_not_retryable(sites_dir: Path) -> None:
    (sites_dir / "off.org.toml").write_text("enabled = false\n")

    lookup = table(sites_dir).lookup("off.org")

    assert lookup.site is None
    assert lookup.retryable is False
    assert "disabled" in (lookup.problem or "")


def test_unknown_site_is_served_with_empty_settings(sites_dir: Path) -> None:
    lookup = table(sites_dir).lookup("new.example")

    assert lookup.site == SiteConfig(name="new.example", enabled=True, settings={})
    assert lookup.problem is None


def test_unknown_site_is_a_problem_when_files_are_required(sites_dir: Path) -> None:
    lookup = table(sites_dir, require_file=True).lookup("new.example")

    assert lookup.site is None
    assert lookup.retryable is False
    assert "unknown site 'new.example'" in (lookup.problem or "")
    assert str(sites_dir / "new.example") in (lookup.problem or "")


def test_reload_picks_up_a_changed_file(sites_dir: Path) -> None:
    # Given a loaded table
    sites = table(sites_dir)

    # When a site's file changes and only that site is reloaded
    (sites_dir / "example.org.toml").write_text('[settings.demo]\ngreeting = "bonjour"\n')
    (sites_dir / "other.net.toml").write_text("enabled = false\n")
    sites.reload("example.org")

    # Then that site has its new settings, and the other one is untouched until reloaded
    assert sites.lookup("example.org").site.settings["demo"]["greeting"] == "bonjour"  # type: ignore[union-attr]
    assert sites.lookup("other.net").site is not None


def test_reload_fixes_a_broken_site_and_can_break_a_good_one(sites_dir: Path) -> None:
    (sites_dir / "broken.org.toml").write_text("enabled = \n")
    sites = table(sites_dir)

    (sites_dir / "broken.org.toml").write_text("")
    sites.reload("broken.org")
    (sites_dir / "example.org.toml").write_text("[[[\n")
    sites.reload("example.org")

    assert sites.lookup("broken.org").site is not None
    assert sites.lookup("example.org").retryable is True


def test_reload_adds_a_new_file(sites_dir: Path) -> None:
    sites = table(sites_dir, require_file=True)
    (sites_dir / "new.example.toml").write_text("")

    sites.reload("new.example")

    assert sites.lookup("new.example").site is not None


def test_removing_the_file_then_reloading_removes_the_site(sites_dir: Path) -> None:
    sites = table(sites_dir, require_file=True)

    (sites_dir / "example.org.toml").unlink()
    sites.reload("example.org")

    assert "example.org" not in sites.names
    assert sites.lookup("example.org").site is None


def test_remove_forgets_a_site_and_reload_all_rereads(sites_dir: Path) -> None:
    sites = table(sites_dir)

    sites.remove("example.org")
    assert sites.names == ["other.net"]

    sites.reload_all()
    assert sites.names == ["example.org", "other.net"]


@pytest.mark.parametrize("name", ["not a site!", "../etc", ""])
def test_lookup_of_an_invalid_site_name_is_a_problem(sites_dir: Path, name: str) -> None:
    lookup = table(sites_dir).lookup(name)

    assert lookup.site is None
    assert lookup.problem


def test_current_site_outside_a_handler_is_an_error() -> None:
    with pytest.raises(LookupError, match="only meaningful inside a handler"):
        current_site()


def test_site_context_sets_and_resets() -> None:
    outer, inner = SiteConfig(name="outer.org"), SiteConfig(name="inner.org")

    with site_context(outer) as entered:
        assert entered is outer
        assert current_site() is outer
        with site_context(inner):
            assert current_site() is inner
        assert current_site() is outer

    with pytest.raises(LookupError):
        current_site()


def test_site_context_resets_after_an_error() -> None:
    with pytest.raises(RuntimeError), site_context(SiteConfig(name="x.org")):
        raise RuntimeError

    with pytest.raises(LookupError):
        current_site()
