"""The sites a process serves, and which one the current item belongs to.

The current site is a context variable, not a global: one worker serves thousands of sites and
switches per item, and a handler that spawns threads or tasks keeps the right site in each.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from statusq.config import Config, SiteConfig, load_site
from statusq.defaults import SITE_PATTERN
from statusq.errors import ConfigError

log = logging.getLogger(__name__)
_SITE = re.compile(SITE_PATTERN)
_IMPLICIT_MAX = 10_000

_current: ContextVar[SiteConfig | None] = ContextVar("statusq_site", default=None)


def current_site() -> SiteConfig:
    """The site whose item is being handled; an error outside of a handler."""
    site = _current.get()
    if site is None:
        raise LookupError("no current site: current_site() is only meaningful inside a handler")
    return site


class site_context:  # noqa: N801 - used like the function it replaced
    """``with site_context(site):`` makes ``site`` current.  A class rather than a generator:
    it runs once per item, and a generator-based context manager costs several times more."""

    __slots__ = ("_site", "_token")

    def __init__(self, site: SiteConfig) -> None:
        self._site = site

    def __enter__(self) -> SiteConfig:
        self._token = _current.set(self._site)
        return self._site

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


@dataclass(frozen=True, slots=True)
class SiteLookup:
    """The answer for one site name: its config, or why items for it cannot run now."""

    site: SiteConfig | None
    #: Why there is no usable site; ``retryable`` says whether an operator fix could help soon.
    problem: str | None = None
    retryable: bool = False


class SiteTable:
    """Site configs from the sites folder, reloadable one site at a time.

    A broken file makes only that site unavailable (its items wait and retry); the other sites
    keep being served.
    """

    def __init__(self, config: Config) -> None:
        self._dir = Path(config.sites.dir)
        self._require_file = config.sites.require_file
        self._sites: dict[str, SiteConfig] = {}
        self._broken: dict[str, str] = {}
        self._removed: set[str] = set()
        self._implicit: dict[str, SiteLookup] = {}
        self.reload_all()

    def reload_all(self) -> None:
        self._sites.clear()
        self._broken.clear()
        self._removed.clear()
        self._implicit.clear()
        if self._dir.is_dir():
            for path in sorted(self._dir.glob("*.toml")):
                self.reload(path.name.removesuffix(".toml"))

    def reload(self, name: str) -> None:
        """Re-read one site's file (after ``update-site``); a missing file removes the site."""
        path = self._dir / f"{name}.toml"
        self._sites.pop(name, None)
        self._broken.pop(name, None)
        self._removed.discard(name)
        self._implicit.pop(name, None)
        if not path.exists():
            return
        try:
            self._sites[name] = load_site(path)
        except ConfigError as exc:
            log.error("site config broken, site=%s not served until fixed: %s", name, exc)
            self._broken[name] = str(exc)

    def remove(self, name: str) -> None:
        """Stop serving a site: its items are dead-lettered until ``update-site`` brings it back."""
        self._sites.pop(name, None)
        self._broken.pop(name, None)
        self._implicit.pop(name, None)
        self._removed.add(name)

    def set_removed(self, names: set[str]) -> None:
        """Make exactly ``names`` the removed sites (the shared store's removals, statusq.removals):
        newly removed ones are forgotten, ones no longer removed re-read from their files."""
        for name in sorted(names - self._removed):
            self.remove(name)
        for name in sorted(self._removed - names):
            self.reload(name)

    @property
    def removed(self) -> frozenset[str]:
        return frozenset(self._removed)

    @property
    def names(self) -> list[str]:
        return sorted(self._sites)

    def lookup(self, name: str) -> SiteLookup:
        site = self._sites.get(name)
        if site is not None:
            if not site.enabled:
                return SiteLookup(None, f"site {name!r} is disabled in its config")
            return SiteLookup(site)
        if name in self._removed:
            return SiteLookup(None, f"site {name!r} was removed (remove-site)")
        if name in self._broken:
            return SiteLookup(None, f"site {name!r} has a broken config: {self._broken[name]}", True)
        if self._require_file:
            return SiteLookup(None, f"unknown site {name!r} (no {self._dir / name}.toml)")
        cached = self._implicit.get(name)
        if cached is None:
            if not _SITE.match(name):
                return SiteLookup(None, f"invalid site name {name!r}")
            if len(self._implicit) >= _IMPLICIT_MAX:
                self._implicit.clear()
            # Validated once per name, not per item: this path serves every item of a host
            # whose sites need no file.
            cached = self._implicit[name] = SiteLookup(SiteConfig(name=name))
        return cached
