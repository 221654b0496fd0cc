"""Unit-test fixtures: no servers, no subprocesses, nothing read from the real machine's config."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from statusq import plugins


@pytest.fixture(autouse=True)
def _no_installed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point plugins installed in the venv must not leak into unit tests."""

    def no_entry_points(**_: Any) -> list[Any]:
        return []

    monkeypatch.setattr(plugins, "entry_points", no_entry_points)


@pytest.fixture(autouse=True)
def _forget_plugin_modules() -> Iterator[None]:
    """Plugins are imported as ``statusq_plugin_<name>``; drop them so tests cannot see each other's."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(plugins._MODULE_PREFIX):
            del sys.modules[name]
