"""MkDocs hooks for statusq's docs: the configuration reference, generated from the code.

``docs/configuration.md`` holds the marker ``<!-- config-reference -->``; at build time it is
replaced by one table per section, whose keys, types, defaults and limits are read from the
pydantic models (``statusq.config``, ``statusq.xmpp.settings``) and whose meanings come from
``config_meanings.toml`` beside this file.  A model key without a meaning, or a meaning for a key
the models lack, stops the build: the reference cannot drift from the code.
"""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from mkdocs.exceptions import PluginError
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from statusq import config as cfg
from statusq.units import parse_duration, parse_size
from statusq.xmpp.settings import XmppSettings

MARKER = "<!-- config-reference -->"
MEANINGS = Path(__file__).with_name("config_meanings.toml")

#: (section as written in the meanings file, heading, model), in the order of the page.
SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    ("config", "top level", cfg.Config),
    ("queue", "`[queue]`", cfg.QueueConfig),
    ("queue.stomp", "`[queue.stomp]`", cfg.StompConfig),
    ("queue.db", "`[queue.db]`", cfg.DBConfig),
    ("daemon", "`[daemon]`", cfg.DaemonConfig),
    ("plugins", "`[plugins]`", cfg.PluginsConfig),
    ("sites", "`[sites]`", cfg.SitesConfig),
    ("log", "`[log]`", cfg.LogConfig),
    ("dispatcher", "`[dispatcher]`", cfg.DispatcherConfig),
    ("metrics", "`[metrics]`", cfg.MetricsConfig),
    ("web", "`[web]`", cfg.WebConfig),
    ("tracing", "`[tracing]`", cfg.TracingConfig),
    ("sentry", "`[sentry]`", cfg.SentryConfig),
    ("transports.NAME", "`[transports.NAME]`", cfg.TransportConfig),
    ("site file", "a site file, `sites/<name>.toml`", cfg.SiteConfig),
    ("settings.xmpp", "`[settings.xmpp]` in a site file", XmppSettings),
]


class ConfigReferenceDrift(Exception):
    """The models and the meanings file disagree."""


#: Fields filled in from elsewhere than the file's keys.
_NOT_KEYS = {(cfg.SiteConfig, "name")}  # the file's name


def _is_table(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def _keys(model: type[BaseModel]) -> list[str]:
    """The TOML keys of a model: its fields, less those that are not keys (``source``) and the
    tables of their own (``[queue.stomp]``), which get a section each."""
    return [
        name
        for name, field in model.model_fields.items()
        if not field.exclude and not _is_table(field) and (model, name) not in _NOT_KEYS
    ]


def _tables(model: type[BaseModel]) -> list[type[BaseModel]]:
    return [f.annotation for f in model.model_fields.values() if _is_table(f)]  # type: ignore[misc]


def _validators(metadata: list[Any]) -> set[Any]:
    return {getattr(m, "func", None) for m in metadata}


def _type(annotation: Any, metadata: list[Any] | None = None) -> str:
    """How a key's type reads to an operator."""
    funcs = _validators(metadata or [])
    if parse_duration in funcs:
        return "duration"
    if any(getattr(f, "__name__", "") == "_memory_limit" for f in funcs):
        return "size or percentage"
    if parse_size in funcs:
        return "size"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0], list(args[1:]))
    if origin in (typing.Union, types.UnionType):
        kinds = [_type(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(kinds))
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is tuple:
        return f"[{', '.join(_type(a) for a in args)}]"
    if origin is dict:
        return "tables" if _type(args[1]) == "table" else f"table of {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}
    return names.get(annotation, str(annotation))


def _duration(seconds: float) -> str:
    """900.0 -> "15m", 0.02 -> "20ms": the way the shipped config writes durations."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "—"
    if parse_duration in _validators(field.metadata) and isinstance(value, float):
        return f"`{_duration(value)}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{list(value)}`"
    if value in ({}, []):
        return "empty" if value == {} else "`[]`"
    return f"`{value}`".replace("'", '"')


def _limits(field: FieldInfo) -> str:
    parts = []
    for m in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥")):
            if getattr(m, attr, None) is not None:
                value = getattr(m, attr)
                parts.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
    return ", ".join(parts)


def load_meanings(path: Path = MEANINGS) -> dict[str, dict[str, str]]:
    """The meanings file: one table per section (``["queue.stomp"]`` quoted, so it stays one name)."""
    with path.open("rb") as f:
        return tomllib.load(f)


def check(meanings: dict[str, dict[str, str]]) -> list[str]:
    """Every disagreement between the models and the meanings, as messages (empty: none)."""
    problems = []
    known = {section for section, _, _ in SECTIONS}
    for section in sorted(set(meanings) - known):
        problems.append(f"{MEANINGS.name}: [{section}] is not a section the models have")
    models = {model for _, _, model in SECTIONS}
    for _, _, model in SECTIONS:
        missing = [table.__name__ for table in _tables(model) if table not in models]
        problems += [f"{name}: a table of {model.__name__} with no section in SECTIONS" for name in missing]
    for section, _, model in SECTIONS:
        keys, described = set(_keys(model)), set(meanings.get(section, {}))
        problems += [f"{section}.{k}: a key of {model.__name__} with no meaning" for k in sorted(keys - described)]
        problems += [f"{section}.{k}: a meaning for a key {model.__name__} lacks" for k in sorted(described - keys)]
    return problems


def config_reference(meanings: dict[str, dict[str, str]] | None = None) -> str:
    """The Markdown of the reference: a table per section, rows in the models' order."""
    meanings = load_meanings() if meanings is None else meanings
    problems = check(meanings)
    if problems:
        raise ConfigReferenceDrift("the config reference and the code disagree:\n  " + "\n  ".join(problems))
    out = []
    for section, heading, model in SECTIONS:
        out += [f"### {heading}", "", "| key | type | default | limits | meaning |", "|---|---|---|---|---|"]
        for key in _keys(model):
            field = model.model_fields[key]
            meaning = meanings[section][key].replace("|", "\\|")
            out.append(
                f"| `{key}` | {_type(field.annotation, field.metadata)} | {_default(field)} "
                f"| {_limits(field)} | {meaning} |"
            )
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: put the generated reference where the page asks for it."""
    if MARKER not in markdown:
        return markdown
    try:
        return markdown.replace(MARKER, config_reference())
    except ConfigReferenceDrift as exc:
        raise PluginError(str(exc)) from None
