"""statusq.metrics.labels: how the site label stays bounded with 10,000 sites."""

from __future__ import annotations

from pathlib import Path

from statusq.metrics import labels
from statusq.metrics.labels import ALL, OTHER, SiteLabels

SITES = [f"site{n}.example" for n in range(10_000)]


def test_none_puts_every_site_in_one_series() -> None:
    label = SiteLabels("none", 100)
    assert {label(site) for site in SITES[:50]} == {ALL}


def test_all_keeps_every_site() -> None:
    label = SiteLabels("all", 3)
    assert [label(site) for site in SITES[:5]] == SITES[:5]


def test_a_list_names_the_sites_that_get_a_series() -> None:
    label = SiteLabels(["a.example", "b.example"], 100)
    assert [label("a.example"), label("c.example"), label("b.example")] == ["a.example", OTHER, "b.example"]


def test_auto_admits_the_first_max_sites_and_keeps_its_word() -> None:
    label = SiteLabels("auto", 100)
    values = [label(site) for site in SITES]
    assert values[:100] == SITES[:100]
    assert set(values[100:]) == {OTHER}
    # Asked again, in another order: the same answers
    assert [label(site) for site in reversed(SITES[:200])] == [OTHER] * 100 + list(reversed(SITES[:100]))


def test_auto_with_max_sites_0_has_no_site_series() -> None:
    assert SiteLabels("auto", 0)("a.example") == OTHER


def test_workers_sharing_a_file_admit_max_sites_between_them(tmp_path: Path) -> None:
    # Given two workers (and a later replacement) of one daemon, seeing sites in different orders
    shared = tmp_path / "site-labels"
    one, two = SiteLabels("auto", 10, shared), SiteLabels("auto", 10, shared)
    seen_one = {one(site) for site in SITES[:8]}
    seen_two = {two(site) for site in SITES[100:108]}
    replacement = SiteLabels("auto", 10, shared)
    seen_new = {replacement(site) for site in SITES[200:300]}

    # Then the daemon as a whole has at most 10 site values, plus _other
    assert seen_one == set(SITES[:8])
    assert seen_two == set(SITES[100:102]) | {OTHER}
    assert seen_new == {OTHER}
    assert shared.read_text().split() == SITES[:8] + SITES[100:102]
    # And a site one worker admitted is its own series in every worker
    assert two(SITES[3]) == replacement(SITES[3]) == SITES[3]


def test_a_full_file_is_not_read_again_and_admitted_sites_survive_a_cache_reset(tmp_path, monkeypatch) -> None:
    shared = tmp_path / "site-labels"
    label = SiteLabels("auto", 2, shared)
    assert [label("a"), label("b"), label("c")] == ["a", "b", OTHER]
    shared.unlink()  # were it read again, "a" would be admitted anew and "d" too
    monkeypatch.setattr(labels, "_CACHE_MAX", 0)  # every lookup starts from an empty cache
    assert [label("a"), label("d"), label("b")] == ["a", OTHER, "b"]
    assert not shared.exists()


def test_an_unusable_file_falls_back_to_a_per_process_choice(tmp_path: Path) -> None:
    label = SiteLabels("auto", 1, tmp_path / "no-such-folder" / "site-labels")
    assert [label("a"), label("b"), label("a")] == ["a", OTHER, "a"]
