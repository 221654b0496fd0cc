"""The peer bench's tables: one per scenario, markdown, each row with its ratio to the best peer."""

from __future__ import annotations

from harness import Outcome

Table = list[tuple[str, Outcome]]  # (group, outcome)


def _best_peer(rows: Table, group: str, higher_is_better: bool) -> float | None:
    """The best non-statusq figure of ``group``; of the whole table if the group has no peer."""
    for wanted in (group, None):
        values = [o.value for g, o in rows if o.row.peer and not o.skipped and (wanted is None or g == wanted)]
        if values:
            return max(values) if higher_is_better else min(values)
    return None


def _notes(outcome: Outcome) -> str:
    return "; ".join(filter(None, [outcome.row.note, *outcome.notes]))


def rates(title: str, rows: Table, unit: str = "items/s") -> None:
    """Rates: the ratio is rate / best peer's rate (> 1: ahead of every peer)."""
    print(f"\n### {title}\n")
    print(f"| shape | row | items | {unit} | / best peer | notes |")
    print("|---|---|---|---|---|---|")
    for group, o in rows:
        if o.skipped:
            print(f"| {group} | {o.row.label} | – | – | – | {o.skipped} |")
            continue
        best = _best_peer(rows, group, higher_is_better=True)
        ratio = f"{o.value / best:.2f}" if best else "–"
        bold = "**" if not o.row.peer else ""
        value = f"{bold}{o.value:,.0f}{bold} | {bold}{ratio}{bold}"
        print(f"| {group} | {o.row.label} | {o.items:,} | {value} | {_notes(o)} |")


def latencies(title: str, rows: Table) -> None:
    """Latencies: the ratio is best peer's / this row's (> 1: sooner than every peer)."""
    print(f"\n### {title}\n")
    print("| row | samples | p50 ms | p99 ms | best peer p50 / p50 | best peer p99 / p99 | notes |")
    print("|---|---|---|---|---|---|---|")
    peers = [o for _, o in rows if o.row.peer and not o.skipped]
    best50 = min((o.value for o in peers), default=0.0)
    best99 = min((o.value2 for o in peers), default=0.0)
    for _, o in rows:
        if o.skipped:
            print(f"| {o.row.label} | – | – | – | – | – | {o.skipped} |")
            continue
        r50 = f"{best50 / o.value:.2f}" if best50 else "–"
        r99 = f"{best99 / o.value2:.2f}" if best99 else "–"
        print(f"| {o.row.label} | {o.items - 2} | {o.value:.1f} | {o.value2:.1f} | {r50} | {r99} | {_notes(o)} |")
