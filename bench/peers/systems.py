"""The four systems of the peer bench: how each one's workers and producers are started.

Every system talks to the suite's private RabbitMQ node (scripts/servers/rabbitmq.sh): statusq
over STOMP (61614), Celery and Dramatiq over AMQP (5673), guest/guest, vhost "/".  statusq runs
from this checkout in the product's venv; Celery and Dramatiq from the bench venv (.bench-venv,
bench/peers/requirements.txt), never the product's dependencies.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "bench" / "peers"
sys.path.insert(0, str(ROOT))  # statusq from this checkout (the bench's driver runs in the product's venv)

from statusq.defaults import DEFAULT_SITE, STOMP_SHARDS  # noqa: E402 -- after the line above
from statusq.queues.stomp.destinations import Destinations, rabbitmq_name  # noqa: E402 -- as above

STATUSQ_BASENAME = "/queue/peers/statusq/"


def _amqp(destination: str) -> str:
    """statusq's STOMP destination /queue/a/b is AMQP queue "a.b" on RabbitMQ."""
    return rabbitmq_name(destination).removeprefix("/queue/")


def statusq_queues() -> list[str]:
    """statusq's AMQP queues in the bench: first the one its producer fills (the default site's
    shard of group ``main``: STOMP groups are sharded by site since 2026-12-03, and the bench
    counted the unsharded queue, which stayed empty), then the other shards, the unsharded queue
    and the dead letters, all deleted before and after each run."""
    routes = Destinations(STATUSQ_BASENAME, [], STOMP_SHARDS)
    home = routes.for_group("main", DEFAULT_SITE)
    rest = [d for d in routes.for_groups({"main"}) if d != home]  # the other shards, the unsharded queue
    return [_amqp(home), *map(_amqp, rest), "peers.statusq.dlq"]


STATUSQ, CELERY_THREADS, CELERY_PREFORK, DRAMATIQ = "statusq", "celery-threads", "celery-prefork", "dramatiq"

#: The AMQP queues each system uses, deleted (so purged) before and after each run.  statusq's
#: STOMP destination /queue/peers/statusq/main is AMQP queue "peers.statusq.main" on RabbitMQ.
QUEUES = {
    STATUSQ: statusq_queues(),
    CELERY_THREADS: ["peers.celery"],
    CELERY_PREFORK: ["peers.celery"],
    DRAMATIQ: ["peers.dramatiq", "peers.dramatiq.DQ", "peers.dramatiq.XQ"],
}


@dataclass(frozen=True)
class Row:
    """One line of a table: a system in one shape."""

    system: str
    label: str
    processes: int = 1  # worker processes (Celery threads: that many `celery worker`s)
    concurrency: int = 1  # items in hand per process (prefork: child processes, one item each)
    transport: str = "peer_work"  # statusq's handler: "peer_async" is the async one
    note: str = ""

    @property
    def peer(self) -> bool:
        return self.system != STATUSQ


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]


def statusq_config(
    path: Path, prefetch: int | None, concurrency: int | None, confirm: bool, var_dir: Path | None = None
) -> Path:
    """A config for one run: only what the run needs, statusq's defaults for the rest."""
    lines = [
        "[queue]",
        'subsystem = "stomp"',
        "[queue.stomp]",
        'servers = ["127.0.0.1:61614"]',
        'username = "guest"',
        'password = "guest"',
        f'basename = "{STATUSQ_BASENAME}"',
        'control_channel = "/topic/peers.statusq.control"',
        'control_secret = "peer-bench-control-secret"',  # a broker daemon needs one (signed commands)
        f"confirm_sends = {'true' if confirm else 'false'}",
    ]
    if prefetch is not None:
        lines.append(f"prefetch = {prefetch}")
    if concurrency is not None:
        lines += ["[daemon]", f"concurrency = {concurrency}"]
    lines += ["[plugins]", f'paths = ["{HERE / "statusq_plugin"}"]', "[log]", 'level = "WARNING"']
    if var_dir is not None:
        lines.insert(0, f'var_dir = "{var_dir}"')
    path.write_text("\n".join(lines) + "\n")
    return path


class Systems:
    """Command lines for workers and producers, given where the bench venv is."""

    def __init__(self, bench_venv: Path) -> None:
        self.venv_bin = bench_venv / "bin"

    def python(self, system: str) -> str:
        return sys.executable if system == STATUSQ else str(self.venv_bin / "python")

    def producer(self, row: Row) -> list[str]:
        script = {STATUSQ: "statusq_peer.py", DRAMATIQ: "dramatiq_peer.py"}.get(row.system, "celery_peer.py")
        return [self.python(row.system), str(HERE / script)]

    def workers(self, row: Row, config: Path | None) -> list[Command]:
        """The processes to start for ``row`` (more than one only for Celery's threads pool)."""
        path = {"PYTHONPATH": f"{ROOT}:{HERE}"}
        if row.system == STATUSQ:
            assert config is not None
            argv = [sys.executable, "-m", "statusq.cli.main", "--config", str(config), "daemon"]
            return [Command([*argv, "--workers", str(row.processes)], path)]
        if row.system == DRAMATIQ:
            argv = [str(self.venv_bin / "dramatiq"), "dramatiq_peer"]
            return [Command([*argv, "--processes", str(row.processes), "--threads", str(row.concurrency)], path)]
        # Celery.  --without-gossip/mingle/heartbeat: no worker-to-worker chatter, Celery's own
        # advice for throughput; none of them changes how a task is received, run or acked.
        argv = [str(self.venv_bin / "celery"), "-A", "celery_peer", "worker", "-l", "WARNING", "-Q", "peers.celery"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if row.system == CELERY_PREFORK:
            # Prefetch per child process, as for every other worker process of the bench.
            env = {**path, "PEERS_CONCURRENCY": "1"}
            return [Command([*argv, "--pool=prefork", "-c", str(row.concurrency), "-n", "prefork@%h"], env)]
        env = {**path, "PEERS_CONCURRENCY": str(row.concurrency)}
        return [
            Command([*argv, "--pool=threads", "-c", str(row.concurrency), "-n", f"threads{k}@%h"], env)
            for k in range(1, row.processes + 1)
        ]
