"""The fenced code blocks of the README and the docs pages, with the directives before them.

A directive is an HTML comment on the line(s) right above a block's opening fence:

- ``<!-- not-run: REASON -->``: the block is not run, and REASON says why (it may not be empty);
- ``<!-- file: PATH -->``: the block is also written to PATH in the page's scratch home, so that
  later blocks of the page (a config, a plugin, a site file) find it;
- ``<!-- needs: activemq | rabbitmq | postgres | prosody -->``: the block talks to that server;
- ``<!-- expect: TEXT -->``: a shell block's output must contain TEXT (several: separate by `` && ``);
- ``<!-- same-as: PATH -->``: the block is a shipped file (a systemd unit, a supervisord program)
  shown whole; the suite checks it is that file, byte for byte, whatever its language.

Blocks of one page run in order and share one scratch home and one Python namespace, the way a
reader following the page would.  Parsing is plain line matching: the pages have no nested fences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Languages the runner executes (toml: loaded through statusq's config models; yaml: parsed).
RUNNABLE = frozenset({"python", "toml", "sh", "yaml"})
SERVERS = frozenset({"activemq", "rabbitmq", "postgres", "prosody"})

_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*(.*)$")
_DIRECTIVE = re.compile(r"^<!--\s*([a-z-]+):\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def not_run(self) -> str | None:
        return self.directives.get("not-run")


def pages() -> list[Path]:
    """The README and every Markdown page of the site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse(path: Path) -> list[Block]:
    """Every fenced block of a page; a directive that is not understood is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language = match.group(1), match.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise ValueError(f"{page}:{i + 1}: a fence that is never closed")
        blocks.append(Block(page, i + 1, language, "\n".join(lines[i + 1 : end]) + "\n", _directives(lines, i, page)))
        i = end + 1
    return blocks


def _directives(lines: list[str], fence: int, page: str) -> dict[str, str]:
    found: dict[str, str] = {}
    j = fence - 1
    while j >= 0 and (match := _DIRECTIVE.match(lines[j].strip())):
        name, value = match.groups()
        if name not in {"not-run", "file", "needs", "expect", "same-as"}:
            raise ValueError(f"{page}:{j + 1}: unknown directive {name!r}")
        found[name] = value
        j -= 1
    return found


def problems(blocks: list[Block]) -> list[str]:
    """Why a block would be neither run nor explained: what the suite refuses."""
    out = []
    for block in blocks:
        if block.not_run is not None:
            if not block.not_run.strip():
                out.append(f"{block.where}: not-run without a reason")
            continue
        if "same-as" in block.directives:
            if not (ROOT / block.directives["same-as"]).is_file():
                out.append(f"{block.where}: same-as {block.directives['same-as']}: no such file")
            continue
        if not block.language:
            out.append(f"{block.where}: a block without a language: name it, or mark it not-run with the reason")
        elif block.language not in RUNNABLE:
            out.append(f"{block.where}: {block.language} blocks are not run: mark it not-run with the reason")
        needs = block.directives.get("needs")
        if needs is not None and needs not in SERVERS:
            out.append(f"{block.where}: needs {needs!r}: not one of {sorted(SERVERS)}")
    return out
