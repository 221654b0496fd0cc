"""Run a page's blocks in order, in a scratch home, the way a reader following the page would.

- ``python``: executed in the page's one namespace, with ``HOME`` (so ``~``), ``STATUSQ_CONFIG``
  and the working directory pointing at the scratch home.  A block that defines ``register`` (a
  plugin) has it called with a real :class:`statusq.PluginApi`, so a registration mistake fails.
- ``toml``: a site file (written under ``sites/``, or starting ``# sites/``) is loaded through
  ``statusq.config.load_site`` and its ``[settings.xmpp]`` through the XMPP settings model; any
  other file through ``statusq.config.load_config``, the code the daemon uses.
- ``sh``: ``bash -euo pipefail``, in the scratch home, which has ``.venv`` (this interpreter's
  environment) and ``plugins`` (the bundled ones); it must exit 0.
- ``yaml``: parsed; Prometheus rule files are also checked with ``promtool`` when it is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from statusq.config import Config, load_config, load_site
from statusq.plugins import PluginApi
from statusq.registry import HandlerRegistry
from statusq.xmpp.settings import parse_settings
from tests.docs.blocks import ROOT, Block

SH_TIMEOUT = 120
#: Written unless the page writes its own: the embedded SQLite default, metrics on a free port
#: (other daemons of the suite may hold 9464).
DEFAULT_CONFIG = 'var_dir = "var"\n\n[metrics]\nlisten = "127.0.0.1:0"\n'


class PageRun:
    """One page's scratch home and Python namespace."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "statusq.toml").write_text(DEFAULT_CONFIG)
        (home / ".venv").symlink_to(Path(sys.prefix))
        (home / "plugins").symlink_to(ROOT / "plugins")
        self.namespace: dict[str, Any] = {"__name__": "__docs_example__"}
        self.env = {
            **os.environ,
            "HOME": str(home),
            "STATUSQ_CONFIG": str(home / "statusq.toml"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PATH": os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")]),
        }

    def run(self, block: Block) -> None:
        target = block.directives.get("file")
        if target is not None:
            path = self.home / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)
        shipped = block.directives.get("same-as")
        if shipped is not None:
            assert block.code == (ROOT / shipped).read_text(), f"{block.where}: differs from {shipped}"
            return
        getattr(self, f"_{block.language}")(block, target)

    def _python(self, block: Block, target: str | None) -> None:
        # A plugin module written to a file runs in a namespace of its own, as its import would.
        namespace = {"__name__": "__docs_plugin__"} if target else self.namespace
        exec(compile(block.code, block.where, "exec"), namespace)
        register = namespace.get("register")
        if callable(register) and "register" in _defined(block.code):
            config = self._config()
            register(PluginApi(f"docs:{block.where}", HandlerRegistry(), config))

    def _toml(self, block: Block, target: str | None) -> None:
        data = tomllib.loads(block.code)
        site_file = (target or "").startswith("sites/") or block.code.startswith("# sites/")
        scratch = self.home / ".blocks"
        scratch.mkdir(exist_ok=True)
        path = Path(self.home / target) if target else scratch / f"line{block.line}.toml"
        if not target:
            path.write_text(block.code)
        if site_file:
            site = load_site(path if path.name.endswith(".toml") else path.with_suffix(".toml"))
            if "xmpp" in site.settings:
                parse_settings(data["settings"]["xmpp"], file=block.where)
        else:
            load_config(path)

    def _sh(self, block: Block, target: str | None) -> None:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SH_TIMEOUT,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{output}"
        for text in block.directives.get("expect", "").split(" && "):
            assert text in output, f"{block.where}: {text!r} not in its output:\n{output}"

    def _yaml(self, block: Block, target: str | None) -> None:
        data = yaml.safe_load(block.code)
        promtool = shutil.which("promtool")
        if isinstance(data, dict) and "groups" in data and promtool:
            rules = self.home / ".blocks" / f"rules{block.line}.yml"
            rules.parent.mkdir(exist_ok=True)
            rules.write_text(block.code)
            done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"{block.where}: promtool check rules\n{done.stdout}{done.stderr}"

    def _config(self) -> Config:
        return load_config(self.home / "statusq.toml")


def _defined(code: str) -> set[str]:
    """Top-level function names a block defines (not those it only imports)."""
    import ast

    return {node.name for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)}
