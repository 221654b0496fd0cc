"""The STOMP settlement writer: windows, batches, generations and receipts, with a fake link and
a fake clock (no broker; no durations asserted)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from statusq.errors import StatusqError
from statusq.queues.stomp import holds, parking, settlements
from statusq.queues.stomp.parking import Parking
from statusq.queues.stomp.settler import Resend, Settlements, SettlementWriter

FLUSH = 0.02


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLink:
    """Records what would go on the wire; receipts confirmed, refused or left pending at will."""

    def __init__(self) -> None:
        self.generation = 1
        self.acks: list[list[str]] = []
        self.commits: list[list[Resend]] = []
        self.receipts: dict[str, bool | None] = {}
        self.confirm_at_once: bool | None = True
        self.written = threading.Event()
        self.fail_with: Exception | None = None
        self.with_acks: list[bool] = []  # per commit: the originals' ACKs in its transaction
        self.full: set[str] = set()  # receipts refused because the broker is full

    def write_acks(self, generation: int, ack_ids: Sequence[str]) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        if generation != self.generation:
            return False
        self.acks.append(list(ack_ids))
        self.written.set()
        return True

    def commit_resends(self, generation: int, resends: Sequence[Resend], *, ack_originals: bool = True) -> str | None:
        if generation != self.generation:
            return None
        self.commits.append(list(resends))
        self.with_acks.append(ack_originals)
        receipt = f"r{len(self.commits)}"
        self.receipts[receipt] = self.confirm_at_once
        self.written.set()
        return receipt

    def confirmed(self, receipt: str) -> bool | None:
        return self.receipts[receipt]

    def refused_as_full(self, receipt: str) -> bool:
        return receipt in self.full


def resend(ack_id: str) -> Resend:
    return Resend(ack_id, "/queue/x", b"{}", {"statusq-attempt": "2", "statusq-id": f"id-{ack_id}"})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


def writer_for(link: FakeLink, clock: FakeClock, batch: int = 4) -> SettlementWriter:
    return SettlementWriter(link, flush_after=FLUSH, batch=batch, receipt_timeout=10.0, clock=clock)


def test_a_settlement_is_due_ack_flush_after_it_was_recorded(clock: FakeClock) -> None:
    pending = Settlements(FLUSH, batch=10)
    assert pending.record_ack(1, "a", clock()) is True, "the first of a window wakes the writer"
    clock.now += FLUSH / 2
    assert pending.record_ack(1, "b", clock()) is False
    assert not pending.due(clock())
    assert pending.wait_time(clock()) == pytest.approx(FLUSH / 2)

    clock.now += FLUSH / 2
    assert pending.due(clock()), "due counts from the oldest, not the newest"
    window = pending.take()
    assert (window.generation, window.acks, window.resends) == (1, ["a", "b"], [])
    assert len(pending) == 0 and not pending.due(clock() + 1)


def test_a_full_batch_is_due_at_once_and_wakes_the_writer(clock: FakeClock) -> None:
    pending = Settlements(FLUSH, batch=3)
    told = [pending.record_ack(1, "a", clock()), pending.record_resend(1, resend("b"), clock())]
    told.append(pending.record_ack(1, "c", clock()))
    assert told == [True, False, True]
    assert pending.due(clock()) and pending.wait_time(clock()) == 0


def test_settlements_of_an_older_connection_are_dropped(clock: FakeClock) -> None:
    pending = Settlements(FLUSH, batch=10)
    pending.record_ack(1, "a", clock())
    pending.record_ack(2, "b", clock())  # a newer connection: the old window is void
    pending.record_ack(1, "c", clock())  # late news from the old one: dropped
    assert pending.take().acks == ["b"]
    pending.record_ack(2, "d", clock())
    assert pending.void(3) == 1 and len(pending) == 0


def test_plain_acks_in_one_write_and_resends_in_one_commit(link: FakeLink, clock: FakeClock) -> None:
    writer = writer_for(link, clock, batch=100)
    for n in range(5):
        writer.ack(1, f"a{n}")
    writer.resend(1, resend("r1"))
    writer.resend(1, resend("r2"))

    assert writer.flush_now(timeout=1.0)

    assert link.acks == [["a0", "a1", "a2", "a3", "a4"]]
    assert [[r.ack_id for r in c] for c in link.commits] == [["r1", "r2"]], "one transaction per window"


def test_a_failed_commit_is_logged_and_nothing_raises(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    link.confirm_at_once = False  # the broker refused it, or the connection dropped
    writer = writer_for(link, clock)
    writer.resend(1, resend("r1"))
    writer.flush_now(timeout=1.0)
    assert "commit of 1 re-send(s) failed" in caplog.text
    assert "broker redelivers the originals" in caplog.text


def test_a_missing_receipt_is_given_up_at_the_receipt_timeout(link: FakeLink, clock: FakeClock) -> None:
    link.confirm_at_once = None  # no receipt comes
    writer = writer_for(link, clock)
    writer.resend(1, resend("r1"))
    writer._write(writer._pending.take())
    writer._check_receipts(clock())
    assert len(writer._unconfirmed) == 1, "still waiting"
    clock.now += 11.0
    writer._check_receipts(clock())
    assert writer._unconfirmed == []


def test_a_write_that_raises_is_logged_not_raised(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    link.fail_with = OSError("broken pipe")
    writer = writer_for(link, clock)
    writer.ack(1, "a")
    writer.flush_now(timeout=1.0)
    assert "1 settlement(s) not written" in caplog.text


def test_a_lost_connections_settlements_never_reach_the_new_one(link: FakeLink, clock: FakeClock) -> None:
    writer = writer_for(link, clock)
    writer.ack(1, "old")
    link.generation = 2  # reconnected before the writer got to it
    writer.flush_now(timeout=1.0)
    assert link.acks == []
    writer.void(2)
    writer.ack(1, "late")
    writer.ack(2, "new")
    writer.flush_now(timeout=1.0)
    assert link.acks == [["new"]]


def test_the_writer_thread_writes_while_the_recording_thread_does_nothing(link: FakeLink) -> None:
    # Given a running writer (the real clock) and an ack recorded by a thread that then hangs
    writer = SettlementWriter(link, flush_after=FLUSH, batch=100, receipt_timeout=5.0)
    writer.start()
    try:
        writer.ack(1, "finished")
        # Then it is written without anyone calling the writer again
        assert link.written.wait(timeout=30), "the ack was never written"
        assert link.acks == [["finished"]]
    finally:
        assert writer.stop(timeout=30)


def test_stop_writes_what_is_pending_and_confirms_it(link: FakeLink) -> None:
    writer = SettlementWriter(link, flush_after=3600.0, batch=100, receipt_timeout=5.0)
    writer.start()
    writer.ack(1, "a")
    writer.resend(1, resend("r"))
    assert writer.stop(timeout=30)
    assert link.acks == [["a"]] and len(link.commits) == 1
    assert writer._unconfirmed == []


def test_an_idle_worker_has_its_settlements_written_at_once(clock: FakeClock) -> None:
    pending = Settlements(FLUSH, batch=10)
    pending.record_ack(1, "a", clock())
    assert not pending.due(clock())
    pending.urgent = True
    assert pending.due(clock()) and pending.wait_time(clock()) == 0
    pending.take()
    assert pending.urgent is False


class FakeSide:
    """The second connection re-sends go on: it can be down, confirm, refuse or stay silent."""

    def __init__(self) -> None:
        self.up = True
        self.sends: list[list[Resend]] = []
        self.receipts: dict[str, bool | None] = {}
        self.confirm_at_once: bool | None = True
        self.full: set[str] = set()
        self.abandoned: list[str] = []

    def ready(self) -> bool:
        return self.up

    def commit_sends(self, resends: Sequence[Resend]) -> str | None:
        self.sends.append(list(resends))
        receipt = f"s{len(self.sends)}"
        self.receipts[receipt] = self.confirm_at_once
        return receipt

    def confirmed(self, receipt: str) -> bool | None:
        return self.receipts[receipt]

    def refused_as_full(self, receipt: str) -> bool:
        return receipt in self.full

    def abandon(self, why: str) -> None:
        self.abandoned.append(why)
        for receipt, state in self.receipts.items():
            if state is None:
                self.receipts[receipt] = False  # lost with the connection

    def refuse_as_full(self, receipt: str) -> None:
        self.receipts[receipt] = False
        self.full.add(receipt)


def side_writer(link: FakeLink, side: FakeSide, clock: FakeClock) -> SettlementWriter:
    return SettlementWriter(link, flush_after=FLUSH, batch=100, receipt_timeout=10.0, clock=clock, side=side)


def written_aside(
    link: FakeLink, clock: FakeClock, confirm: bool | None, *acks: str
) -> tuple[SettlementWriter, FakeSide]:
    """A writer whose side link confirms at once (True), refuses (False) or stays silent (None),
    with a retry of "retried" (and ACKs of ``acks``) recorded on connection 1 and written."""
    side = FakeSide()
    side.confirm_at_once = confirm
    writer = side_writer(link, side, clock)
    writer.resend(1, resend("retried"))
    for ack_id in acks:
        writer.ack(1, ack_id)
    writer._write(writer._pending.take())
    return writer, side


def test_re_sends_go_aside_and_their_originals_are_acked_once_confirmed(link: FakeLink, clock: FakeClock) -> None:
    # Given a side link that holds its receipt back, when a retry and an ack are written
    writer, side = written_aside(link, clock, None, "done")
    # Then the copy went aside, nothing on the consuming link carries a transaction, and the
    # original stays unacked while the copy is unconfirmed
    assert [[r.ack_id for r in batch] for batch in side.sends] == [["retried"]]
    assert link.commits == [] and link.acks == [["done"]]
    writer._check_receipts(clock())
    assert link.acks == [["done"]]
    # When the receipt comes, the original is acked
    side.receipts["s1"] = True
    writer._check_receipts(clock())
    assert link.acks == [["done"], ["retried"]] and writer._unconfirmed == []


def test_a_side_commit_that_fails_is_held_not_sent_with_the_acks(link: FakeLink, clock: FakeClock) -> None:
    # Given a side link that refuses the commit (an ERROR, or the connection lost)
    writer, _ = written_aside(link, clock, False)
    # When its receipt is looked at
    writer._check_receipts(clock())
    # Then the copy is held, its original unacked: sent again with its ACK on the consuming
    # link, a full broker refused it in turn and the original was redelivered and run again
    assert link.commits == [] and link.acks == [] and writer.held == 1


def test_a_side_receipt_late_on_a_live_connection_is_held_not_sent_again(link: FakeLink, clock: FakeClock) -> None:
    # A full ActiveMQ holds a commit (a store wait per SEND) past receipt_timeout; sent again
    # with the ACKs it was a copy more, refused in turn, and its originals redelivered
    writer, side = written_aside(link, clock, None)
    clock.now += 15.0
    writer._check_receipts(clock())
    assert link.commits == [] and len(writer._unconfirmed) == 1
    assert writer.held == 1 and writer.holds.active
    # When the receipt comes at last, the original is acked and the hold is over
    side.receipts["s1"] = True
    writer._check_receipts(clock())
    assert link.acks == [["retried"]] and writer.held == 0 and not writer.holds.active


def test_a_side_receipt_lost_with_its_connection_is_held_and_tried_on_the_next(
    link: FakeLink, clock: FakeClock
) -> None:
    writer, side = written_aside(link, clock, None)
    clock.now += 15.0
    writer._check_receipts(clock())
    side.receipts["s1"] = False  # the side connection dropped: maybe sent, maybe not
    writer._check_receipts(clock())
    assert link.commits == [] and writer.held == 1
    clock.now += 1.0
    writer._try_held(clock())
    assert ids(side.sends) == [["retried"], ["retried"]]


def test_stopping_gives_up_a_late_side_receipt_the_old_way(link: FakeLink, clock: FakeClock) -> None:
    writer, _ = written_aside(link, clock, None)
    writer._check_receipts(clock() + 15.0, giving_up=True)
    assert [[r.ack_id for r in batch] for batch in link.commits] == [["retried"]]


def test_with_the_side_link_down_re_sends_travel_with_their_acks(link: FakeLink, clock: FakeClock) -> None:
    side = FakeSide()
    side.up = False
    writer = side_writer(link, side, clock)
    writer.resend(1, resend("retried"))
    writer._write(writer._pending.take())
    assert side.sends == [] and len(link.commits) == 1


def test_a_confirmed_copy_whose_original_connection_is_gone_is_not_acked_elsewhere(
    link: FakeLink, clock: FakeClock
) -> None:
    # Given a re-send aside whose receipt is still out, then the consuming connection lost
    writer, side = written_aside(link, clock, None)
    link.generation = 2
    # When the receipt comes, the original is not ACKed on the new connection (an ACK there would
    # name a frame it never sent): the broker redelivers it, a duplicate of the copy
    side.receipts["s1"] = True
    writer._check_receipts(clock())
    assert link.acks == [] and writer._unconfirmed == []
    # Then that original, redelivered, is acked unrun (its copy is on the broker), once; a frame
    # with the same id not redelivered (the copy itself) runs
    item = {"statusq-id": "id-retried"}
    assert not writer.superseded.drop({**item, "redelivered": "false"})
    assert writer.superseded.drop({**item, "redelivered": "true"})
    assert not writer.superseded.drop({**item, "redelivered": "true"}), "once"


def test_a_receipt_pokes_a_waiting_writer(link: FakeLink, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a running writer with nothing due for an hour (not even its idle glance) and a side
    # commit unconfirmed
    monkeypatch.setattr(settlements, "_IDLE_WAIT", 3600.0)
    side = FakeSide()
    side.confirm_at_once = None
    writer = SettlementWriter(link, flush_after=3600.0, batch=1, receipt_timeout=3600.0, side=side)
    writer.start()
    try:
        writer.resend(1, resend("retried"))
        for _ in range(3000):
            if side.sends:
                break
            threading.Event().wait(0.01)
        assert side.sends, "the re-send was never written"
        # When the receipt comes and the side link pokes the writer
        side.receipts["s1"] = True
        writer.poke()
        # Then the original is acked without waiting for the hour
        assert link.written.wait(timeout=30), "the original was never acked"
        assert link.acks == [["retried"]]
    finally:
        assert writer.stop(timeout=30)


def ids(batches: Sequence[Sequence[Resend]]) -> list[list[str]]:
    return [[r.ack_id for r in batch] for batch in batches]


class FakeStore:
    """The shared store's side of parking: rows written, or a failure."""

    def __init__(self) -> None:
        self.rows: list[object] = []
        self.fail = False

    def hold(self, items: Sequence[object]) -> None:
        if self.fail:
            raise StatusqError("database is locked")
        self.rows.extend(items)


def held_writer(link: FakeLink, clock: FakeClock, store: FakeStore | None = None) -> tuple[SettlementWriter, FakeSide]:
    """A writer whose first window of re-sends the side link refused because the broker is full
    (with ``store``: a shared store to park them in)."""
    writer, side = written_aside(link, clock, None, "done")
    if store is not None:
        writer.parking = Parking(store, "test", clock=clock, wall=lambda: 1_000.0)  # type: ignore[arg-type]
    side.refuse_as_full("s1")
    writer._check_receipts(clock())
    return writer, side


def test_re_sends_a_full_broker_refused_are_held_and_tried_again_with_a_backoff(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Given re-sends the side link's commit was refused for, the broker being full
    writer, side = held_writer(link, clock)
    # Then they are held: not sent again with their ACKs (refused again, the originals would be
    # redelivered and run again), and the original is not acked
    assert link.commits == [] and link.acks == [["done"]]
    assert writer.held == 1 and writer.holds.active
    # When the writer looks before the first delay (0.5 s) is up, nothing is tried
    clock.now += 0.4
    writer._try_held(clock())
    assert len(side.sends) == 1
    # When it is up, they are tried again aside, still without their ACKs
    clock.now += 0.2
    writer._try_held(clock())
    assert ids(side.sends) == [["retried"], ["retried"]] and link.acks == [["done"]]
    # When that try is refused too, the next waits twice as long
    side.refuse_as_full("s2")
    writer._check_receipts(clock())
    clock.now += 0.9
    writer._try_held(clock())
    assert len(side.sends) == 2
    clock.now += 0.2
    writer._try_held(clock())
    assert len(side.sends) == 3
    # When the broker takes them, the original is acked once, and the hold is over
    side.receipts["s3"] = True
    writer._check_receipts(clock())
    assert link.acks == [["done"], ["retried"]]
    assert writer.held == 0 and not writer.holds.active and writer._unconfirmed == []
    # And the episode was logged once at each end, not per try
    assert caplog.text.count("the broker refused re-sends as full: held") == 1
    assert caplog.text.count("takes re-sends again") == 1


def test_the_backoff_between_tries_stops_doubling_at_its_most(link: FakeLink, clock: FakeClock) -> None:
    writer, side = held_writer(link, clock)
    delays = []
    for n in range(2, 10):
        before = clock.now
        while len(side.sends) < n:
            clock.now += 0.05
            writer._try_held(clock())
        delays.append(round(clock.now - before, 1))
        side.refuse_as_full(f"s{n}")
        writer._check_receipts(clock())
    assert delays[:3] == [0.5, 1.0, 2.0] and delays[-1] == pytest.approx(holds.MOST_DELAY, abs=0.1)


def test_while_re_sends_are_held_new_ones_wait_with_them_for_one_try(link: FakeLink, clock: FakeClock) -> None:
    writer, side = held_writer(link, clock)
    # When another window's re-sends are written while the hold lasts
    writer.resend(1, resend("next"))
    writer._write(writer._pending.take())
    # Then they are not tried on their own, but with the held ones, in one transaction
    assert len(side.sends) == 1 and writer.held == 2
    clock.now += 0.5
    writer._try_held(clock())
    assert ids(side.sends)[1] == ["retried", "next"]
    side.receipts["s2"] = True
    writer._check_receipts(clock())
    assert link.acks == [["done"], ["retried", "next"]]


def test_held_re_sends_wait_for_the_side_link_not_the_consuming_one(link: FakeLink, clock: FakeClock) -> None:
    # A full ActiveMQ holds a connection's SENDs in a store wait: on the consuming connection
    # that stalled its ACKs and heart-beats too, and the connection was lost
    writer, side = held_writer(link, clock)
    side.up = False
    clock.now += 0.5
    writer._try_held(clock())
    assert link.commits == [] and len(side.sends) == 1 and writer.held == 1
    side.up = True
    clock.now += 0.5
    writer._try_held(clock())
    assert ids(side.sends) == [["retried"], ["retried"]]
    side.receipts["s2"] = True
    writer._check_receipts(clock())
    assert link.acks == [["done"], ["retried"]] and writer.held == 0


def test_without_a_side_link_held_re_sends_go_on_the_consuming_link_without_their_acks(
    link: FakeLink, clock: FakeClock
) -> None:
    writer, _side = held_writer(link, clock)
    writer.side = None  # (RabbitMQ has none; it blocks rather than refuses, so holds nothing)
    clock.now += 0.5
    writer._try_held(clock())
    # Their ACKs not in the transaction: refused, it would take the originals' ACKs down with
    # it (ActiveMQ forgets an ACK rolled back: the original could no longer be acked)
    assert ids(link.commits) == [["retried"]] and link.with_acks == [False]
    link.receipts["r1"] = True
    writer._check_receipts(clock())
    assert link.acks == [["done"], ["retried"]] and writer.held == 0


def test_a_lost_connection_drops_what_is_held(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    writer, side = held_writer(link, clock)
    # When the consuming connection is replaced (the broker redelivers the originals)
    link.generation = 2
    writer.void(2)
    clock.now += 0.5
    writer._try_held(clock())
    # Then nothing held is sent again or acked: the redelivered originals run once more instead
    assert len(side.sends) == 1 and link.commits == [] and link.acks == [["done"]]
    assert writer.held == 0 and not writer.holds.active
    assert "1 held re-send(s) dropped" in caplog.text


def test_a_held_try_lost_with_the_side_connection_is_held_again(link: FakeLink, clock: FakeClock) -> None:
    writer, side = held_writer(link, clock)
    clock.now += 0.5
    writer._try_held(clock())
    side.receipts["s2"] = False
    writer._check_receipts(clock())
    assert link.commits == [] and writer.held == 1 and writer.holds.active
    assert writer.holds.delay == 2 * holds.FIRST_DELAY


def test_stopping_drops_what_is_held(link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    writer, _side = held_writer(link, clock)
    assert writer.flush_now(timeout=1.0)
    assert writer.held == 0 and link.acks == [["done"]]
    assert "dropped (stopping)" in caplog.text


def test_a_refusal_for_a_replaced_connection_leaves_what_the_new_one_holds(link: FakeLink, clock: FakeClock) -> None:
    # Given re-sends held for connection 2, and a commit of connection 1's still unanswered
    side = FakeSide()
    side.confirm_at_once = None
    writer = side_writer(link, side, clock)
    writer.resend(1, resend("old"))
    writer._write(writer._pending.take())
    link.generation = 2
    writer.void(2)
    writer.resend(2, resend("new"))
    writer._write(writer._pending.take())
    side.refuse_as_full("s2")
    writer._check_receipts(clock())
    assert writer.held == 1 and writer.holds.generation == 2
    # When the old connection's commit is refused too
    side.refuse_as_full("s1")
    writer._check_receipts(clock())
    # Then it is dropped (the broker redelivers its original), and the new one is still held
    assert writer.held == 1 and [r.ack_id for r in writer.holds.resends] == ["new"]


def test_a_stop_that_gives_up_a_held_try_does_not_say_the_broker_took_it(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    writer, _side = held_writer(link, clock)
    clock.now += 0.5
    writer._try_held(clock())
    writer._check_receipts(clock() + 15.0, giving_up=True)
    assert "takes re-sends again" not in caplog.text and not writer.holds.active


def test_superseded_ids_are_bounded_the_oldest_forgotten_first() -> None:
    kept = settlements.Superseded(most=3)
    kept.add(["a", "b", None, "c", "d"])
    assert [kept.drop({"statusq-id": i, "redelivered": "true"}) for i in "abcd"] == [False, True, True, True]


def test_with_a_shared_store_a_refused_re_send_is_parked_and_its_original_acked(
    link: FakeLink, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a re-send the broker refused as full, and a shared store for delays
    store = FakeStore()
    writer, side = held_writer(link, clock, store)
    # Then it is a row of the store due now, its original is acked (its window slot freed for an
    # item to run), and nothing is held for the broker
    assert [(r.destination, r.body, r.due_at) for r in store.rows] == [("/queue/x", b"{}", 1_000.0)]  # type: ignore[attr-defined]
    assert store.rows[0].headers["statusq-id"] == "id-retried"  # type: ignore[attr-defined]
    assert link.acks == [["done"], ["retried"]]
    assert writer.held == 0 and not writer.holds.active
    # When more re-sends come within PARK_FOR, they go to the store without a try at the broker
    writer.resend(1, resend("second"))
    writer._write(writer._pending.take())
    assert len(side.sends) == 1 and len(store.rows) == 2 and link.acks[-1] == ["second"]
    # When that is past, the next goes to the broker again, and once it takes one the spell ends
    clock.now += parking.PARK_FOR + 0.1
    writer.resend(1, resend("third"))
    writer._write(writer._pending.take())
    assert ids(side.sends) == [["retried"], ["third"]]
    side.receipts["s2"] = True
    writer._check_receipts(clock())
    assert link.acks[-1] == ["third"] and writer.parking is not None and writer.parking.since is None
    # And the spell was logged once at each end
    assert caplog.text.count("parked in the shared store (their originals acked)") == 1
    assert caplog.text.count("2 parked over") == 1


def test_a_store_that_cannot_take_a_refused_re_send_leaves_it_held(link: FakeLink, clock: FakeClock) -> None:
    # Given a shared store that fails, when the broker refuses a re-send as full
    store = FakeStore()
    store.fail = True
    writer, _side = held_writer(link, clock, store)
    # Then it is held with its original unacked, as without a store
    assert store.rows == [] and link.acks == [["done"]]
    assert writer.held == 1 and writer.holds.active


def test_a_re_send_lost_with_a_stop_is_parked_not_sent_again_with_its_ack(link: FakeLink, clock: FakeClock) -> None:
    # Given a re-send aside whose receipt never came, when the writer gives up at a stop
    store = FakeStore()
    writer, _side = written_aside(link, clock, None, "done")
    writer.parking = Parking(store, "test", clock=clock)  # type: ignore[arg-type]
    writer._check_receipts(clock() + 60, giving_up=True)
    # Then it is parked (maybe a duplicate of a commit that did land, never a loss), not sent
    # on the consuming link with its ACK
    assert len(store.rows) == 1 and link.commits == [] and link.acks == [["done"], ["retried"]]


def test_with_a_shared_store_a_re_send_unconfirmed_past_its_time_is_parked_not_held(
    link: FakeLink, clock: FakeClock
) -> None:
    # Given a re-send aside whose commit a full broker holds unanswered on a live connection
    store = FakeStore()
    writer, side = written_aside(link, clock, None, "done")
    writer.parking = Parking(store, "test", clock=clock)  # type: ignore[arg-type]
    # When its receipt is not in by the receipt timeout
    clock.now += 10.5
    writer._check_receipts(clock())
    # Then the side connection is closed (what the broker had not committed it rolls back), not
    # waited on with the original unacked
    assert len(side.abandoned) == 1 and writer.held == 0 and store.rows == []
    # And the next look finds the commit lost, parks the re-send and acks its original
    writer._check_receipts(clock())
    assert len(store.rows) == 1 and link.acks == [["done"], ["retried"]]
    assert writer.refusing and writer._unconfirmed == []


def test_without_a_store_a_re_send_unconfirmed_past_its_time_is_held(link: FakeLink, clock: FakeClock) -> None:
    writer, side = written_aside(link, clock, None, "done")
    clock.now += 10.5
    writer._check_receipts(clock())
    assert side.abandoned == [] and writer.held == 1 and link.acks == [["done"]]
