"""Reading config files: TOML in, a validated :class:`Config` or :class:`SiteConfig` out.

Apart from the models because this is the part that touches the file system and the
environment: which file to read, paths made relative to it, and pydantic's errors turned into a
:class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from statusq import defaults
from statusq.config.model import Config
from statusq.config.sections import SiteConfig
from statusq.errors import ConfigError


def _errors(exc: ValidationError, file: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        lines.append((key, reason))
    first_key, first_reason = lines[0]
    more = "".join(f"\n  {file}: {key}: {reason}" for key, reason in lines[1:])
    return ConfigError(first_reason + more, file=file, key=first_key)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:  # found by fuzzing: tomllib lets it through
        raise ConfigError(f"not UTF-8 text (byte {exc.start}): TOML files are UTF-8", file=str(path)) from None


def _resolve(base: Path, value: str) -> str:
    return str((base / value).resolve()) if not os.path.isabs(value) else value


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in a file are relative to that file, not to wherever the daemon started."""
    # Only values of the right shape are touched: anything else is left for validation to
    # report with its key.
    data = dict(data)
    if isinstance(data.setdefault("var_dir", "var"), str):
        data["var_dir"] = _resolve(base, data["var_dir"])
    plugins = data.setdefault("plugins", {})
    if isinstance(plugins, dict) and isinstance(plugins.get("paths"), list):
        paths = plugins["paths"]
        data["plugins"] = {
            **plugins,
            "paths": [_resolve(base, p) if isinstance(p, str) else p for p in paths],
        }
    sites = data.setdefault("sites", {})
    if isinstance(sites, dict) and isinstance(sites.get("dir", "sites"), str):
        data["sites"] = {**sites, "dir": _resolve(base, sites.get("dir", "sites"))}
    queue = data.get("queue")
    url = queue.get("db_url") if isinstance(queue, dict) else None
    if isinstance(queue, dict) and isinstance(url, str) and _relative_sqlite(url):
        data["queue"] = {**queue, "db_url": "sqlite:///" + _resolve(base, url.removeprefix("sqlite:///"))}
    return data


def _relative_sqlite(url: str) -> bool:
    path = url.removeprefix("sqlite:///")
    return url.startswith("sqlite:///") and not path.startswith("/") and not path.startswith(":memory:")


def find_config(path: str | os.PathLike[str] | None) -> Path | None:
    """The file to read: an explicit path, then $STATUSQ_CONFIG, then the system file if any."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(defaults.CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    system = Path(defaults.SYSTEM_CONFIG)
    return system if system.exists() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file; with none found, the built-in defaults apply."""
    found = find_config(path)
    if found is None:
        return Config.model_validate(_resolve_paths({}, Path.cwd()))
    data = read_toml(found)
    data = _resolve_paths(data, found.resolve().parent)
    data["source"] = str(found.resolve())
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _errors(exc, str(found)) from None


def load_site(path: Path) -> SiteConfig:
    """Read one site's file; the site's name is the file's name without ``.toml``."""
    data = read_toml(path)
    if "name" in data:
        raise ConfigError("unknown key (a site is named by its file name)", file=str(path), key="name")
    try:
        return SiteConfig.model_validate({**data, "name": path.name.removesuffix(".toml")})
    except ValidationError as exc:
        raise _errors(exc, str(path)) from None
