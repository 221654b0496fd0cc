"""statusq.xmpp.settings: a site's [settings.xmpp] table, and errors naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from statusq import defaults
from statusq.config import load_site
from statusq.errors import ConfigError
from statusq.xmpp.settings import parse_settings, settings_for

FILE = "sites/example.org.toml"
MINIMAL = {"jid": "bot@example.org", "password": "secret"}


def error(raw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, file=FILE)
    return caught.value


def test_minimal_settings_take_the_documented_defaults() -> None:
    settings = parse_settings(MINIMAL, file=FILE)

    assert settings.full_jid == f"bot@example.org/{defaults.XMPP_RESOURCE}"
    assert (settings.host, settings.port) == ("example.org", defaults.XMPP_PORT)
    assert settings.tls == "starttls"
    assert settings.ping_interval == defaults.XMPP_PING_INTERVAL == 120
    assert settings.confirm_ttl == defaults.XMPP_CONFIRM_TTL
    assert "secret" not in repr(settings)


def test_durations_server_and_jid_are_normalised() -> None:
    settings = parse_settings(
        {**MINIMAL, "jid": "Bot@Example.ORG", "server": "127.0.0.1:5223", "tls": "none", "ping_interval": "2m",
         "ping_timeout": "500ms", "confirm_ttl": "1h"},
        file=FILE,
    )  # fmt: skip

    assert settings.jid == "bot@example.org"
    assert (settings.host, settings.port) == ("127.0.0.1", 5223)
    assert (settings.ping_interval, settings.ping_timeout, settings.confirm_ttl) == (120, 0.5, 3600)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({**MINIMAL, "ping_intervall": 5}, "settings.xmpp.ping_intervall", "unknown key"),
        ({"jid": "bot@example.org"}, "settings.xmpp.password", "Field required"),
        ({**MINIMAL, "password": ""}, "settings.xmpp.password", "at least 1 character"),
        ({**MINIMAL, "jid": "example.org"}, "settings.xmpp.jid", "must be a bare JID"),
        ({**MINIMAL, "jid": "bot@example.org/home"}, "settings.xmpp.jid", "the resource is its own key"),
        ({**MINIMAL, "jid": "a@b@c"}, "settings.xmpp.jid", "is not a JID"),
        ({**MINIMAL, "server": "example.org"}, "settings.xmpp.server", "is not host:port"),
        ({**MINIMAL, "server": "example.org:99999"}, "settings.xmpp.server", "is not host:port"),
        ({**MINIMAL, "ping_interval": "soon"}, "settings.xmpp.ping_interval", "is not a duration"),
        ({**MINIMAL, "ping_interval": 0}, "settings.xmpp.ping_interval", "greater than 0"),
        ({**MINIMAL, "tls": "maybe"}, "settings.xmpp.tls", "'starttls', 'direct' or 'none'"),
        ({**MINIMAL, "confirm_text": "no code here"}, "settings.xmpp.confirm_text", "must contain {code}"),
        ({**MINIMAL, "confirm_text": "{code} {oops}"}, "settings.xmpp.confirm_text", "bad placeholder"),
        ({**MINIMAL, "reconnect_delay": "2m", "reconnect_delay_max": "1m"}, "settings.xmpp", "must not exceed"),
        ("bot@example.org", "settings.xmpp", "must be a table"),
    ],
)
def test_mistakes_name_the_file_the_key_and_the_reason(raw: Any, key: str, reason: str) -> None:
    problem = error(raw)

    assert (problem.file, problem.key) == (FILE, key)
    assert reason in problem.reason
    assert str(problem).startswith(f"{FILE}: {key}: ")


def test_every_mistake_is_listed() -> None:
    problem = error({"jid": "nope", "password": "", "ping_interval": "soon"})

    assert str(problem).count(FILE) == 3


@pytest.mark.parametrize("server", ["127.0.0.1:5222", "localhost:5222", "[::1]:5222", "127.0.0.2:1"])
def test_unencrypted_connections_are_allowed_to_loopback(server: str) -> None:
    assert parse_settings({**MINIMAL, "server": server, "tls": "none"}, file=FILE).tls == "none"


def test_unencrypted_connections_are_refused_elsewhere() -> None:
    problem = error({**MINIMAL, "server": "xmpp.example.org:5222", "tls": "none"})
    assert "unencrypted" in problem.reason and "'xmpp.example.org'" in problem.reason

    # Without a server, the JID's domain is where the password would go
    assert "'example.org'" in error({**MINIMAL, "tls": "none"}).reason
    assert parse_settings({"jid": "bot@localhost", "password": "x", "tls": "none"}, file=FILE).host == "localhost"


def test_a_site_file_without_the_table_has_no_settings(tmp_path: Path) -> None:
    (tmp_path / "plain.example.toml").write_text('[settings.demo]\ngreeting = "hi"\n')
    (tmp_path / "chat.example.toml").write_text('[settings.xmpp]\njid = "bot@chat.example"\npassword = "pw"\n')
    (tmp_path / "bad.example.toml").write_text('[settings.xmpp]\njid = "bot@bad.example"\n')

    assert settings_for(load_site(tmp_path / "plain.example.toml"), tmp_path) is None
    found = settings_for(load_site(tmp_path / "chat.example.toml"), tmp_path)
    assert found is not None and found.jid == "bot@chat.example"
    with pytest.raises(ConfigError, match=r"bad\.example\.toml: settings\.xmpp\.password: Field required"):
        settings_for(load_site(tmp_path / "bad.example.toml"), tmp_path)
