"""statusq.daemon.exits: how a worker's end is classified, and the memory-at-start rule."""

from __future__ import annotations

import os
import signal

import pytest

from statusq.daemon.exits import Cause, Respawn, classify, describe_code, worker_exit_code
from statusq.defaults import EXIT_MEMORY_AT_START, EXIT_RESTART


def end(code: int, **known: object) -> tuple[Cause, Respawn, str | None]:
    options: dict[str, object] = {"ready": True, "retiring": False, "idle_exit": False, **known}
    result = classify(code, **options)  # type: ignore[arg-type]
    return result.cause, result.respawn, result.counter


# -- the worker's side: a memory restart before any item ------------------------------------


def test_over_the_limit_after_work_asks_to_be_replaced() -> None:
    assert worker_exit_code(EXIT_RESTART, handled=12) == EXIT_RESTART


def test_over_the_limit_before_any_item_says_a_replacement_would_be_too() -> None:
    # Celery #4125: a fresh worker over the limit exits at once; replacing it loops forever
    assert worker_exit_code(EXIT_RESTART, handled=0) == EXIT_MEMORY_AT_START


@pytest.mark.parametrize("code", [0, os.EX_CONFIG, os.EX_SOFTWARE])
def test_other_exits_pass_through(code: int) -> None:
    assert worker_exit_code(code, handled=0) == code


# -- the supervisor's side --------------------------------------------------------------------


def test_memory_restart_is_replaced_at_once_and_counted() -> None:
    assert end(EXIT_RESTART) == (Cause.MEMORY, Respawn.NOW, "memory")


def test_memory_at_start_leaves_the_slot_empty_and_names_the_reason() -> None:
    result = classify(EXIT_MEMORY_AT_START, ready=True, retiring=False, idle_exit=False, error="rss 300 MB > 100 MB")

    assert (result.cause, result.respawn, result.counter) == (Cause.MEMORY_AT_START, Respawn.NEVER, None)
    assert result.detail == "rss 300 MB > 100 MB"
    assert not result.may_hold_claims


def test_a_kill_past_the_hard_time_limit_is_replaced_at_once_and_releases_claims() -> None:
    result = classify(-signal.SIGKILL, ready=True, retiring=False, idle_exit=False, killed_for="busy 12.0s on item 7")

    assert (result.cause, result.respawn, result.counter) == (Cause.TIME_LIMIT, Respawn.NOW, "time_limit")
    assert result.detail == "killed by SIGKILL: busy 12.0s on item 7"
    assert result.may_hold_claims


def test_an_outside_sigkill_is_a_crash_naming_the_item_in_hand() -> None:
    result = classify(-signal.SIGKILL, ready=True, retiring=False, idle_exit=False, item="item id=7")

    assert (result.cause, result.respawn, result.counter) == (Cause.CRASH, Respawn.AFTER_DELAY, "crash")
    assert result.detail == "killed by SIGKILL while handling item id=7"
    assert result.may_hold_claims and not result.at_start


def test_a_start_failure_is_a_crash_at_start_with_the_workers_error() -> None:
    error = "plugin 'broken' failed to import (x.py): RuntimeError: cannot start"
    result = classify(os.EX_CONFIG, ready=False, retiring=False, idle_exit=False, error=error)

    assert result.cause is Cause.CRASH and result.at_start
    assert result.detail == f"exited 78 at start: {error}"
    assert result.crash_code == os.EX_CONFIG  # what the supervisor exits with if it gives up


@pytest.mark.parametrize(("code", "expected"), [(-signal.SIGSEGV, os.EX_SOFTWARE), (1, os.EX_SOFTWARE), (64, 64)])
def test_giving_up_exits_with_a_start_failures_code_else_ex_software(code: int, expected: int) -> None:
    assert classify(code, ready=False, retiring=False, idle_exit=False).crash_code == expected


def test_a_worker_asked_to_stop_is_not_replaced_whatever_its_code() -> None:
    assert end(0, retiring=True) == (Cause.STOPPED, Respawn.NEVER, None)
    assert end(-signal.SIGKILL, retiring=True) == (Cause.STOPPED, Respawn.NEVER, None)


def test_idle_exit_ends_the_slot_and_a_plain_exit_0_is_replaced_uncounted() -> None:
    assert end(0, idle_exit=True) == (Cause.IDLE, Respawn.NEVER, None)
    assert end(0) == (Cause.STOPPED, Respawn.AFTER_DELAY, None)


def test_describe_code() -> None:
    assert describe_code(-signal.SIGTERM) == "killed by SIGTERM"
    assert describe_code(-99) == "killed by signal 99"
    assert describe_code(3) == "exited 3"
