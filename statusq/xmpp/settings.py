"""A site's XMPP settings: the ``[settings.xmpp]`` table of its site file, validated once.

``SiteConfig.settings`` is a free-form dict owned by plugins, so this part validates its own table
with its own model, and a mistake is reported like any config error: file, key and reason
(``sites/example.org.toml: settings.xmpp.ping_interval: ...``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from statusq import defaults
from statusq.config import Duration, SiteConfig
from statusq.errors import ConfigError

#: The key of the table in a site file: ``[settings.xmpp]``.
SETTINGS_KEY = "xmpp"


def _bare_jid(value: str) -> str:
    from slixmpp.jid import JID, InvalidJID  # noqa: PLC0415 -- slixmpp: only where a JID is checked fully

    try:
        jid = JID(value)
    except InvalidJID as exc:
        raise ValueError(f"{value!r} is not a JID: {exc}") from None
    if not jid.user or jid.resource:
        raise ValueError(f"{value!r} must be a bare JID, user@domain (the resource is its own key)")
    return str(jid.bare)


def _server(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


def _format_fields(value: str) -> str:
    try:
        value.format(site="s", code="c", valid="v")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"bad placeholder in {value!r} ({exc!r}); use {{site}}, {{code}}, {{valid}}") from None
    if "{code}" not in value:
        raise ValueError("the text must contain {code}")
    return value


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class XmppSettings(BaseModel):
    """One site's connection and behaviour; every duration takes ``30``, ``"250ms"``, ``"2m"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jid: Annotated[str, AfterValidator(_bare_jid)]
    password: str = Field(min_length=1, repr=False)
    #: ``host:port`` to connect to; default: the JID's domain, found through DNS as XMPP says.
    server: Annotated[str, AfterValidator(_server)] | None = None
    resource: str = Field(default=defaults.XMPP_RESOURCE, min_length=1, max_length=256)
    #: ``starttls`` (required), ``direct`` (XEP-0368 TLS port), or ``none``: plain TCP, only
    #: allowed to a loopback server because the password would cross the wire unencrypted.
    tls: Literal["starttls", "direct", "none"] = "starttls"
    #: Presence status text (empty: none).
    status: str = ""
    ping_interval: Duration = Field(default=defaults.XMPP_PING_INTERVAL, gt=0)
    ping_timeout: Duration = Field(default=defaults.XMPP_PING_TIMEOUT, gt=0)
    connect_timeout: Duration = Field(default=defaults.XMPP_CONNECT_TIMEOUT, gt=0)
    send_timeout: Duration = Field(default=defaults.XMPP_SEND_TIMEOUT, gt=0)
    reconnect_delay: Duration = Field(default=defaults.XMPP_RECONNECT_DELAY, gt=0)
    reconnect_delay_max: Duration = Field(default=defaults.XMPP_RECONNECT_DELAY_MAX, gt=0)
    confirm_ttl: Duration = Field(default=defaults.XMPP_CONFIRM_TTL, gt=0)
    confirm_max_failures: int = Field(default=defaults.XMPP_CONFIRM_MAX_FAILURES, ge=1, le=1000)
    confirm_text: Annotated[str, AfterValidator(_format_fields)] = (
        'Your confirmation code for {site} is {code}. Reply "confirm {code}" within {valid}.'
    )

    @model_validator(mode="after")
    def _checks(self) -> XmppSettings:
        if self.reconnect_delay > self.reconnect_delay_max:
            raise ValueError("reconnect_delay must not exceed reconnect_delay_max")
        if self.tls == "none" and not is_loopback(self.host):
            raise ValueError(
                f'tls = "none" sends the password unencrypted: only allowed to a loopback server, not {self.host!r}'
            )
        return self

    @property
    def host(self) -> str:
        return self.server.rpartition(":")[0] if self.server else self.jid.partition("@")[2]

    @property
    def port(self) -> int:
        return int(self.server.rpartition(":")[2]) if self.server else defaults.XMPP_PORT

    @property
    def full_jid(self) -> str:
        return f"{self.jid}/{self.resource}"


def site_file(sites_dir: str | Path, site: str) -> str:
    return str(Path(sites_dir) / f"{site}.toml")


def parse_settings(raw: Any, *, file: str) -> XmppSettings:
    """Validate a ``[settings.xmpp]`` table; errors name ``file`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, key=f"settings.{SETTINGS_KEY}")
    try:
        return XmppSettings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(["settings", SETTINGS_KEY, *(str(p) for p in err["loc"])])
            reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append((key, reason))
        key, reason = problems[0]
        more = "".join(f"\n  {file}: {k}: {r}" for k, r in problems[1:])
        raise ConfigError(reason + more, file=file, key=key) from None


def settings_for(site: SiteConfig, sites_dir: str | Path) -> XmppSettings | None:
    """The site's XMPP settings, None when its file has no ``[settings.xmpp]`` table."""
    raw = site.settings.get(SETTINGS_KEY)
    if raw is None:
        return None
    return parse_settings(raw, file=site_file(sites_dir, site.name))
