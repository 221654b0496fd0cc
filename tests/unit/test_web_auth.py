"""Who may read and change the page: token, sessions, CSRF."""

from __future__ import annotations

from statusq.config import WebConfig
from statusq.web.auth import COOKIE, MAX_SESSIONS, SESSION_TTL, Gate, Sessions, parse_cookies, same, session_cookie

TOKEN = "a-token-of-twenty-chars"


def gate(**web: object) -> Gate:
    config = WebConfig.model_validate({"enabled": True, **web})
    return Gate(lambda: config)


def cookie_for(g: Gate) -> tuple[dict[str, str], str]:
    session = g.login(TOKEN)
    assert session is not None
    return {"Cookie": f"other=1; {COOKIE}={session.id}"}, session.csrf


def test_same_is_false_for_missing_values() -> None:
    assert same("x", "x")
    assert not same("x", "y")
    assert not same("", "")
    assert not same(None, "x")
    assert not same("x", None)


def test_session_cookie_is_httponly_and_samesite_strict() -> None:
    cookie = session_cookie("abc")
    assert cookie.startswith(f"{COOKIE}=abc;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


def test_parse_cookies_keeps_the_first_of_a_name() -> None:
    assert parse_cookies("a=1; b=2; a=3") == {"a": "1", "b": "2"}
    assert parse_cookies(None) == {}


def test_without_a_token_everyone_reads_and_nobody_writes() -> None:
    g = gate()
    assert not g.writable
    assert g.login("anything") is None
    access = g.access({})
    assert access.read and not access.write


def test_with_a_token_anonymous_readers_are_sent_to_log_in_unless_allowed() -> None:
    assert not gate(token=TOKEN).access({}).read
    anonymous = gate(token=TOKEN, anonymous_read=True).access({})
    assert anonymous.read and not anonymous.write


def test_a_login_with_the_wrong_token_makes_no_session() -> None:
    g = gate(token=TOKEN)
    assert g.login("wrong-token-of-20-chars") is None
    assert g.login(None) is None


def test_a_session_may_write_with_its_own_csrf_token_only() -> None:
    g = gate(token=TOKEN)
    headers, csrf = cookie_for(g)
    access = g.access(headers)
    assert access.read and access.write and not access.by_header
    assert g.csrf_ok(access, {"csrf": csrf})
    assert not g.csrf_ok(access, {})
    assert not g.csrf_ok(access, {"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")})
    _, other_csrf = cookie_for(g)
    assert not g.csrf_ok(access, {"csrf": other_csrf})  # another session's token


def test_an_unknown_session_cookie_grants_nothing() -> None:
    access = gate(token=TOKEN).access({"Cookie": f"{COOKIE}=forged"})
    assert not access.read and not access.write


def test_the_bearer_header_authenticates_without_csrf() -> None:
    g = gate(token=TOKEN)
    access = g.access({"Authorization": f"Bearer {TOKEN}"})
    assert access.write and access.by_header and g.csrf_ok(access, {})
    assert not g.access({"Authorization": "Bearer nope"}).write


def test_changing_the_token_ends_existing_sessions() -> None:
    config = WebConfig(enabled=True, token=TOKEN)
    current = [config]
    g = Gate(lambda: current[0])
    headers, _ = cookie_for(g)
    assert g.access(headers).write
    current[0] = WebConfig(enabled=True, token="another-token-of-20-chars")
    assert not g.access(headers).write


def test_sessions_expire_and_are_bounded() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    first = sessions.create(TOKEN)
    assert sessions.get(first.id) is first
    now[0] += SESSION_TTL + 1
    assert sessions.get(first.id) is None
    made = [sessions.create(TOKEN) for _ in range(MAX_SESSIONS + 5)]
    assert sessions.get(made[0].id) is None
    assert sessions.get(made[-1].id) is made[-1]
