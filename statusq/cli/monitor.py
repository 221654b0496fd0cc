"""``statusq snmp``, ``statusq check`` and ``statusq gmetric``: the daemon's /metrics for SNMP,
nagios and ganglia.

None of them reads the config or the queue: they read the running daemon's ``/metrics``, so
what they report is what Prometheus sees, and they work on a host that only monitors.
"""

from __future__ import annotations

import os
import sys
import time

import click

from statusq import defaults
from statusq.cli.helpers import setup_logging
from statusq.metrics import ganglia, nagios, snmp
from statusq.metrics.scrape import Samples, ScrapeError, fetch

DEFAULT_URL = f"http://{defaults.METRICS_LISTEN}/metrics"

url_option = click.option(
    "--url", "-u", default=DEFAULT_URL, show_default=True, help="The daemon's metrics endpoint ([metrics] listen)."
)


SNMP_EPILOG = """\b
In snmpd.conf (see conf/snmpd.conf):
  pass_persist .1.3.6.1.3.9464 /opt/statusq/.venv/bin/statusq snmp --url http://127.0.0.1:9464/metrics
\b
Nothing may go to stderr (snmpd reads it as answers): --log-file says why statusqUp is 0.
\b
Examples:
  snmpwalk -v2c -c CHANGE-ME-statusq 127.0.0.1:1161 .1.3.6.1.3.9464
\b
See docs/monitoring.md (make docs builds it into site/).
"""


@click.command(epilog=SNMP_EPILOG)
@url_option
@click.option("--base-oid", default=snmp.format_oid(snmp.BASE_OID), show_default=True, help="Where STATUSQ-MIB sits.")
@click.option("--cache", "cache_seconds", default=1.0, show_default=True, help="Seconds one scrape answers for.")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for /metrics (snmpd waits on us).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="Where to log failed scrapes.")
def snmp_agent(url: str, base_oid: str, cache_seconds: float, timeout: float, log_file: str | None) -> int:
    """Serve STATUSQ-MIB to net-snmp's snmpd over the pass_persist protocol (stdin/stdout)."""
    # snmpd hands its helper one pipe as both stdout and stderr: a line on stderr would be read
    # as an answer. So stderr goes nowhere (or to --log-file), whatever writes to it.
    with open(log_file or os.devnull, "a") as sink:
        os.dup2(sink.fileno(), sys.stderr.fileno())
    setup_logging("WARNING")
    try:
        base = snmp.parse_oid(base_oid)
    except ValueError:
        raise click.BadParameter(f"{base_oid!r} is not a dotted OID", param_hint="--base-oid") from None
    agent = snmp.PassPersist(lambda: fetch(url, timeout=timeout), base=base, cache_seconds=cache_seconds)
    agent.serve(sys.stdin, sys.stdout)
    return 0


CHECK_EPILOG = """\b
NAMEs: backlog (ready + delayed items), dead_letters, hung_queues, workers_down
(expected - alive), last_handled_age (seconds; judged only while items are ready).
RANGE: N (alert outside 0..N), N: (below N), ~:N (above N), N:M (outside), @N:M (inside).
\b
Examples:
  check_statusq -w backlog=100,dead_letters=0 -c backlog=1000,workers_down=0
  check_statusq -H 127.0.0.1 -p 9464 -w last_handled_age=300 -c last_handled_age=900
\b
See docs/monitoring.md (make docs builds it into site/).
"""


@click.command(epilog=CHECK_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--hostname", "-H", default="127.0.0.1", show_default=True, help="The daemon's metrics address.")
@click.option("--port", "-p", default=9464, show_default=True, help="The daemon's metrics port.")
@click.option("--url", "-u", default=None, help="The whole endpoint URL, instead of -H and -p.")
@click.option("--timeout", "-t", default=10.0, show_default=True, help="Seconds before giving up (UNKNOWN).")
@click.option("--warning", "-w", multiple=True, metavar="NAME=RANGE[,...]", help="WARNING thresholds.")
@click.option("--critical", "-c", multiple=True, metavar="NAME=RANGE[,...]", help="CRITICAL thresholds.")
def check(
    hostname: str, port: int, url: str | None, timeout: float, warning: tuple[str, ...], critical: tuple[str, ...]
) -> int:
    """A nagios check of a running daemon: one status line with perfdata; exit 0/1/2/3."""
    address = f"[{hostname}]" if ":" in hostname else hostname
    try:
        # Thresholds first: a typo in the service definition is reported whether or not the
        # daemon is up.
        warn, crit = nagios.parse_thresholds(warning), nagios.parse_thresholds(critical)
        samples = fetch(url or f"http://{address}:{port}/metrics", timeout=timeout)
        result = nagios.evaluate(snmp.totals(samples, time.time()), warn, crit)
    except (ScrapeError, nagios.RangeError) as exc:
        result = nagios.unknown(str(exc))
    click.echo(result.line)
    return int(result.status)


def check_plugin(argv: list[str] | None = None) -> int:
    """``scripts/check_statusq``: ``check`` with its usage errors as UNKNOWN, as nagios expects."""
    try:
        result = check.main(args=argv, prog_name="check_statusq", standalone_mode=False)
    except click.ClickException as exc:
        click.echo(nagios.unknown(exc.format_message()).line)
        return int(nagios.Status.UNKNOWN)
    except click.exceptions.Abort:
        return int(nagios.Status.UNKNOWN)
    return result if isinstance(result, int) else 0


GMETRIC_EPILOG = """\b
Examples (crontab, gmond's udp_recv_channel on port 8649):
  * * * * *  statusq gmetric --gmond 127.0.0.1:8649
\b
See docs/monitoring.md (make docs builds it into site/).
"""


@click.command(epilog=GMETRIC_EPILOG)
@url_option
@click.option("--gmond", default=f"127.0.0.1:{ganglia.DEFAULT_PORT}", show_default=True, help="gmond's UDP HOST:PORT.")
@click.option("--tmax", default=60, show_default=True, help="Seconds between sends, as gmond should expect.")
@click.option("--dmax", default=0, show_default=True, help="Seconds before gmond forgets a figure (0: never).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for /metrics.")
@click.option("--verbose", "-v", is_flag=True, help="Say what was sent.")
def gmetric(url: str, gmond: str, tmax: int, dmax: int, timeout: float, verbose: bool) -> int:
    """Send the daemon's figures to ganglia's gmond, as gmetric would (one shot: run it from cron).

    Exit 69 when the daemon cannot be read; statusq_up = 0 is sent all the same.
    """
    host, sep, port = gmond.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{gmond!r} is not HOST:PORT", param_hint="--gmond")
    samples: Samples | None
    try:
        samples = fetch(url, timeout=timeout)
    except ScrapeError as exc:
        click.echo(f"statusq gmetric: {exc}", err=True)
        samples = None
    count = ganglia.send(ganglia.figures(samples, time.time()), (host.strip("[]"), int(port)), tmax=tmax, dmax=dmax)
    if verbose:
        click.echo(f"sent {count} metrics to {gmond}")
    return os.EX_UNAVAILABLE if samples is None else 0
