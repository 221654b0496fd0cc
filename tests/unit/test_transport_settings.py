"""Per-transport settings: ``register_handler(..., time_limit=, max_retries=, retry_delay=,
retry_delay_max=)``, ``[transports.NAME]`` overriding them, ``[transports.NAME] priority`` for
producers; resolved once per transport, and applied by the processor, the time limit and the
supervisor's hard kill."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config, HandlerSettings, load_config
from statusq.daemon.processes import WorkerProcess
from statusq.daemon.reporter import StateReporter
from statusq.errors import ConfigError, PluginError
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.outcome import Outcome
from statusq.plugins import PluginApi
from statusq.processor import ItemProcessor
from statusq.queues.base import Subscription
from statusq.queues.memory import MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import Policies, RetryPolicy, TransportPolicy, resolve_policies
from statusq.runtime import Runtime
from statusq.sites import SiteTable
from statusq.state import ItemInHand, WorkerState
from statusq.worker import check_groups
from tests.unit.fakes import RecordingConsumer, make_delivery, write_plugin


class Nothing(QueueHandler):
    def handle(self, item: QueueItem) -> bool | None:
        return False


def api(config: Config | None = None) -> tuple[PluginApi, HandlerRegistry]:
    registry = HandlerRegistry()
    return PluginApi("pushy", registry, config or Config()), registry


# --- register_handler -------------------------------------------------------------------------


def test_register_handler_keeps_its_settings_parsed() -> None:
    plugin, registry = api()

    plugin.register_handler("push", Nothing, time_limit="30s", max_retries=10, retry_delay="5s", retry_delay_max="1h")

    registration = registry.get("push")
    assert registration is not None
    assert registration.settings == HandlerSettings(
        time_limit=30.0, max_retries=10, retry_delay=5.0, retry_delay_max=3600.0
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time_limt": "30s"}, r"time_limt: unknown option"),
        ({"max_retries": -1}, r"max_retries: Input should be greater than or equal to 0"),
        ({"retry_delay": "soon"}, r"retry_delay: 'soon' is not a duration"),
        ({"time_limit": "30s", "colour": "red", "retries": 3}, r"colour: unknown option; retries: unknown option"),
    ],
)
def test_register_handler_refuses_unknown_or_invalid_options_naming_them(options: dict[str, Any], message: str) -> None:
    plugin, registry = api()

    with pytest.raises(PluginError, match=rf"plugin pushy: register_handler\('push'\): .*{message}"):
        plugin.register_handler("push", Nothing, **options)

    assert registry.get("push") is None  # nothing registered


def test_register_handler_refuses_a_priority_and_says_where_it_belongs() -> None:
    # Producers never load plugins, so a priority given here could never reach an enqueue
    plugin, _ = api()

    with pytest.raises(PluginError, match=r"set \[transports\.push\] priority in the config"):
        plugin.register_handler("push", Nothing, priority=7)


# --- [transports.NAME] ------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "statusq.toml"
    path.write_text(text)
    return path


def test_config_transport_settings_are_parsed(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            '[transports.push]\ntime_limit = "30s"\nmax_retries = 10\nretry_delay = "5s"\n'
            'retry_delay_max = "1h"\npriority = 8\n[transports.other]\ngroup = "main"\n',
        )
    )

    push = config.transports["push"]
    assert (push.time_limit, push.max_retries, push.retry_delay, push.retry_delay_max, push.priority) == (
        30.0,
        10,
        5.0,
        3600.0,
        8,
    )
    assert config.transports["other"].max_retries is None  # not set: the next source applies
    assert config.default_priorities() == {"push": 8}


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ("retries = 3", "transports.push.retries", "unknown key"),
        ("priority = 10", "transports.push.priority", "less than or equal to 9"),
        ('time_limit = "-1s"', "transports.push.time_limit", "not a duration"),
        ("max_retries = 2000", "transports.push.max_retries", "less than or equal to 1000"),
        ('time_limit = "2h"', "(top level)", r"claim_timeout \(900s\) must be longer than transports.push.time_limit"),
    ],
)
def test_a_bad_transport_key_is_a_config_error_naming_file_and_key(
    tmp_path: Path, body: str, key: str, reason: str
) -> None:
    path = write_config(tmp_path, f"[transports.push]\n{body}\n")

    with pytest.raises(ConfigError, match=reason) as caught:
        load_config(path)

    assert (caught.value.file, caught.value.key) == (str(path), key)


def plugin_runtime(tmp_path: Path, plugin: str, **config: Any) -> Runtime:
    write_plugin(tmp_path / "plugins", "pushy", plugin)
    source = tmp_path / "statusq.toml"
    return Runtime(
        Config.model_validate(
            {
                "queue": {"subsystem": "memory", "max_retries": 5, "retry_delay": "2s", "retry_delay_max": "10m"},
                "daemon": {"time_limit": "300s"},
                "plugins": {"paths": [str(tmp_path / "plugins")]},
                "sites": {"dir": str(tmp_path / "sites")},
                "source": str(source),
                **config,
            }
        )
    )


PUSH = """
    from statusq import QueueHandler

    class Push(QueueHandler):
        def handle(self, item):
            return False

    def register(api):
        api.register_handler("push", Push, time_limit="30s", max_retries=10, retry_delay="5s")
        api.register_handler("plain", Push)
    """


def test_a_typo_in_a_transport_name_stops_the_worker_naming_file_and_key(tmp_path: Path) -> None:
    # At config load no plugin is loaded, so an unknown name can only be caught when a worker
    # has loaded them (check_groups -> check_routes, before the first item)
    runtime = plugin_runtime(tmp_path, PUSH, transports={"psuh": {"max_retries": 1}, "xmppout": {"max_retries": 1}})

    with pytest.raises(ConfigError, match=r"unknown transport 'psuh': no plugin registers it") as caught:
        check_groups(runtime, None)

    assert (caught.value.file, caught.value.key) == (str(tmp_path / "statusq.toml"), "transports.psuh")


def test_a_registered_time_limit_beyond_the_claim_timeout_stops_the_worker(tmp_path: Path) -> None:
    plugin = PUSH.replace('time_limit="30s"', 'time_limit="1h"')
    runtime = plugin_runtime(tmp_path, plugin)

    with pytest.raises(ConfigError, match=r"transport 'push''s time_limit") as caught:
        check_groups(runtime, None)

    assert caught.value.key == "queue.claim_timeout"


# --- precedence ---------------------------------------------------------------------------------


def test_config_over_registration_over_the_global_defaults(tmp_path: Path) -> None:
    # Given push registered with time_limit 30s, max_retries 10, retry_delay 5s; the config
    # overrides push's max_retries and sets plain's retry_delay_max
    runtime = plugin_runtime(
        tmp_path, PUSH, transports={"push": {"max_retries": 1}, "plain": {"retry_delay_max": "1m"}}
    )

    policies = resolve_policies(runtime.config, runtime.registry)

    # Then each field comes from the highest source that sets it
    assert policies.of("push") == TransportPolicy(RetryPolicy(1, 5.0, 600.0), 30.0)
    assert policies.of("plain") == TransportPolicy(RetryPolicy(5, 2.0, 60.0), 300.0)
    # And a transport nobody named gets the [queue]/[daemon] defaults
    assert policies.of("unknown") == TransportPolicy(RetryPolicy(5, 2.0, 600.0), 300.0)
    assert policies.of("unknown") is policies.default


def test_the_inline_backend_has_no_time_limit(tmp_path: Path) -> None:
    runtime = plugin_runtime(tmp_path, PUSH)

    policies = resolve_policies(runtime.config, runtime.registry, timed=False)

    assert {policies.time_limit(t) for t in ("push", "plain", "unknown")} == {0.0}


# --- the processor applies the transport's policy ----------------------------------------------


class Spin(QueueHandler):
    def handle(self, item: QueueItem) -> bool | None:
        if item.payload.get("spin"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pass
        return False


def processor_with(by_transport: dict[str, TransportPolicy]) -> ItemProcessor:
    registry = HandlerRegistry()
    for transport in ("echo", "patient"):
        registry.register(transport, Spin, group="main", plugin="test")
    default = TransportPolicy(RetryPolicy(2, 1.0, 10.0), 0.0)
    return ItemProcessor(registry, SiteTable(Config()), default.retry, transports=Policies(default, by_transport))


def test_the_processor_uses_each_transports_retries_and_backoff() -> None:
    processor = processor_with({"patient": TransportPolicy(RetryPolicy(10, 100.0, 1000.0), 0.0)})

    def settle(transport: str, attempt: int) -> RecordingConsumer:
        consumer = RecordingConsumer()
        processor.process(make_delivery({}, transport=transport, attempt=attempt), consumer)
        return consumer

    # echo: the default's 3 attempts; patient: 11 attempts, 100 s backoff
    assert settle("echo", 3).dead
    [(_d, delay, _r)] = settle("patient", 3).retried
    assert 400 * 0.8 <= delay <= 400
    assert settle("patient", 11).dead
    # an attempt beyond the transport's last never runs (the previous one never finished)
    assert settle("patient", 12).dead[0][1].startswith("gave up after 11 attempts, the last of which never finished")


def test_the_processor_applies_each_transports_time_limit() -> None:
    processor = processor_with({"echo": TransportPolicy(RetryPolicy(2, 1.0, 10.0), 0.1)})
    consumer = RecordingConsumer()

    result = processor.process(make_delivery({"spin": True}, transport="echo"), consumer)

    assert result.outcome is Outcome.RETRY
    assert result.reason == "ItemTimeLimitExceeded: handler ran past the time limit of 0.1s"


def test_max_retries_from_config_end_an_item_on_the_memory_backend(tmp_path: Path) -> None:
    # Given push registered with max_retries=10, overridden to 0 in the config
    runtime = plugin_runtime(tmp_path, PUSH, transports={"push": {"max_retries": 0}})
    policies = resolve_policies(runtime.config, runtime.registry)
    processor = ItemProcessor(runtime.registry, runtime.sites, policies.default.retry, transports=policies)
    with MemoryQueueManager(runtime.config) as qm:
        qm.enqueue({}, "push")
        consumer = qm.subscribe(Subscription())

        # When its one attempt fails
        delivery = consumer.fetch()
        assert delivery is not None
        processor.process(delivery, consumer)

        # Then it is dead at once
        [letter] = qm.dead_letters()
        assert (letter.attempts, letter.error) == (1, "handler returned False (gave up after 1 attempts)")


# --- producers: the priority default comes from the config --------------------------------------


def test_an_item_enqueued_without_a_priority_gets_its_transports_from_config() -> None:
    config = Config.model_validate({"queue": {"subsystem": "memory"}, "transports": {"push": {"priority": 8}}})
    with MemoryQueueManager(config) as qm:
        qm.enqueue({}, "push")
        qm.enqueue({}, "push", priority=1)
        qm.enqueue({}, "other")
        consumer = qm.subscribe(Subscription())
        priorities = []
        while (delivery := consumer.fetch()) is not None:
            priorities.append((delivery.transport, delivery.priority))
            consumer.ack(delivery)

    assert sorted(priorities) == [("other", 4), ("push", 1), ("push", 8)]


# --- the supervisor's hard kill follows the item's limit -----------------------------------


def test_the_supervisor_kills_past_the_items_own_limit(tmp_path: Path) -> None:
    config = Config.model_validate({"daemon": {"time_limit": "10s", "time_limit_grace": "5s"}})
    now = time.monotonic()

    def proc(limit: float | None) -> WorkerProcess:
        worker = WorkerProcess(1, 101, 0, config, now - 100, tmp_path / "w")
        worker.ready = True
        item = ItemInHand("7", "s.example", "push", 1, time.time(), now - 20.0, limit)
        worker.state = WorkerState(1, 101, 0, state="busy", item=item)
        return worker

    assert proc(None).stuck(now) is not None  # [daemon] time_limit: 10 s + 5 s < 20 s
    assert proc(30.0).stuck(now) is None  # its transport allows 30 s
    assert proc(0.0).stuck(now) is None  # its transport has no limit
    assert proc(2.0).stuck(now) == (
        "busy 20.0s on item id=7 site=s.example transport=push attempt=1, past time_limit 2s + time_limit_grace 5s"
    )


def test_the_worker_writes_each_items_limit_into_its_state_file(tmp_path: Path) -> None:
    reporter = StateReporter(tmp_path / "worker.json", WorkerState(1, 101, 0))
    reporter.time_limit_of = {"push": 30.0}.get  # type: ignore[assignment]

    reporter.before_item(make_delivery({}, transport="push"))

    written = json.loads((tmp_path / "worker.json").read_bytes())
    assert written["item"]["time_limit"] == 30.0
    assert written == json.loads(json.dumps(reporter.state.to_dict()))


def test_a_transports_expires_dead_letters_an_item_not_started_in_time() -> None:
    processor = processor_with({"echo": TransportPolicy(RetryPolicy(2, 1.0, 10.0), 0.0, expires=3600.0)})
    fresh, stale = make_delivery({}, transport="echo"), make_delivery({}, transport="echo")
    stale.enqueued_at -= 3601
    consumer = RecordingConsumer()
    processor.process(fresh, consumer)
    processor.process(stale, consumer)
    assert [d.id for d, _delay, _reason in consumer.retried] == [fresh.id]  # it ran (Spin returns False)
    [(_delivery, reason)] = consumer.dead
    assert reason.startswith("expired: not started by ") and "(transport echo: expires 3600s)" in reason


def test_expires_comes_from_register_handler_or_the_config(tmp_path: Path) -> None:
    plugin, registry = api()
    plugin.register_handler("push", Nothing, expires="1h")
    plugin.register_handler("mail", Nothing, expires="1h")
    config = Config.model_validate({"transports": {"mail": {"expires": "10m"}}})
    policies = resolve_policies(config, registry)
    assert (policies.of("push").expires, policies.of("mail").expires, policies.of("other").expires) == (
        3600.0,
        600.0,
        0.0,
    )
