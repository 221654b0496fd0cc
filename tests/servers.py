"""Reaching the real servers the tests use; under CI=true an unreachable one fails the run."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(host: str, port: int, what: str) -> None:
    """Skip (locally) or fail (CI) when a server the test needs does not answer."""
    if reachable(host, port):
        return
    message = f"{what} is not reachable on {host}:{port} (run `make servers`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The path of command-line tool ``name``; skip (locally) or fail (CI) when it is not installed."""
    import shutil

    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (scripts/servers/tools.sh installs it)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
