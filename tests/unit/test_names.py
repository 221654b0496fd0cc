"""statusq.names: the checks on names that end up in destinations, SQL and log lines."""

from __future__ import annotations

from typing import Any

import pytest

from statusq import defaults, names
from statusq.errors import DataError


@pytest.mark.parametrize("name", ["echo", "feed.fetch", "a_b-c", "0", "x" * 64])
def test_good_transport(name: str) -> None:
    assert names.check_transport(name) == name


@pytest.mark.parametrize("name", ["", "Echo", "a b", "_x", "x" * 65, "a;drop", None, 3])
def test_bad_transport_is_named(name: Any) -> None:
    with pytest.raises(DataError, match="invalid transport") as caught:
        names.check_transport(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["example.org", "Example.ORG", "my_site-2", "localhost", "a" * 255])
def test_good_site(name: str) -> None:
    assert names.check_site(name) == name


@pytest.mark.parametrize("name", ["", "../etc", ".hidden", "a b", "a/b", "a" * 256, "é.org", None])
def test_bad_site_is_named(name: Any) -> None:
    with pytest.raises(DataError, match="invalid site"):
        names.check_site(name)


@pytest.mark.parametrize(("priority", "expected"), [(None, defaults.DEFAULT_PRIORITY), (0, 0), (9, 9)])
def test_good_priority(priority: int | None, expected: int) -> None:
    assert names.check_priority(priority) == expected


@pytest.mark.parametrize("priority", [-1, 10, True, 4.0, "4"])
def test_bad_priority(priority: Any) -> None:
    with pytest.raises(DataError, match="invalid priority"):
        names.check_priority(priority)


def test_headers_are_copied() -> None:
    given = {"a": "1"}

    checked = names.check_headers(given)

    assert checked == given
    assert checked is not given
    assert names.check_headers(None) == {}


@pytest.mark.parametrize("headers", [{"a": 1}, {1: "a"}, {"a": None}])
def test_headers_must_be_strings(headers: Any) -> None:
    with pytest.raises(DataError, match="headers"):
        names.check_headers(headers)
