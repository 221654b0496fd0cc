"""statusq.config: TOML files validated into typed config; every error names file, key and reason."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from statusq import defaults
from statusq.config import Config, load_config, load_site
from statusq.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither $STATUSQ_CONFIG nor a real /etc/statusq may change what these tests read."""
    monkeypatch.delenv(defaults.CONFIG_ENV, raising=False)
    monkeypatch.setattr(defaults, "SYSTEM_CONFIG", str(tmp_path / "no-such-system.toml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def config_error(path: Path, text: str) -> ConfigError:
    write(path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def test_empty_file_gives_defaults_resolved_against_its_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "statusq.toml", "")

    config = load_config(path)

    assert config.source == str(path.resolve())
    assert config.queue.subsystem == "db"
    assert config.queue.max_retries == defaults.MAX_RETRIES
    assert config.queue.retry_delay == defaults.RETRY_DELAY
    assert config.queue.claim_timeout == defaults.CLAIM_TIMEOUT
    assert config.daemon.time_limit == defaults.TIME_LIMIT
    assert config.sites.default == defaults.DEFAULT_SITE
    assert config.sites.require_file is False
    assert config.plugins.paths == []
    assert config.plugins.enabled is None
    assert config.var_dir == str(tmp_path.resolve() / "var")
    assert config.sites.dir == str(tmp_path.resolve() / "sites")
    assert config.db_url == f"sqlite:///{tmp_path.resolve() / 'var' / 'statusq.sqlite'}"
    assert config.base_dir == tmp_path.resolve()


def test_no_file_anywhere_gives_defaults_under_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    config = load_config()

    assert config.source is None
    assert config.var_dir == str(tmp_path.resolve() / "var")
    assert config.base_dir == Path.cwd()


def test_relative_paths_are_relative_to_the_config_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a config in etc/ that uses relative paths, and a daemon started from elsewhere
    etc = tmp_path / "etc"
    path = write(
        etc / "statusq.toml",
        """\
        var_dir = "state"
        [queue]
        db_url = "sqlite:///db/queue.sqlite"
        [plugins]
        paths = ["my-plugins", "/opt/abs-plugins"]
        [sites]
        dir = "../sites"
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # When it is loaded
    config = load_config(path)

    # Then every relative path hangs off etc/, and absolute ones are kept
    base = etc.resolve()
    assert config.var_dir == str(base / "state")
    assert config.queue.db_url == f"sqlite:///{base / 'db' / 'queue.sqlite'}"
    assert config.db_url == config.queue.db_url
    assert config.plugins.paths == [str(base / "my-plugins"), "/opt/abs-plugins"]
    assert config.sites.dir == str(tmp_path.resolve() / "sites")


@pytest.mark.parametrize(
    "url", ["sqlite:////var/lib/statusq/q.sqlite", "postgresql://db.example/statusq?sslmode=require"]
)
def test_absolute_and_server_db_urls_are_kept(tmp_path: Path, url: str) -> None:
    path = write(tmp_path / "statusq.toml", f'[queue]\ndb_url = "{url}"\n')

    assert load_config(path).queue.db_url == url


def test_sqlite_memory_url_is_not_turned_into_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "statusq.toml", '[queue]\ndb_url = "sqlite:///:memory:"\n')

    assert load_config(path).queue.db_url == "sqlite:///:memory:"


def test_values_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "statusq.toml",
        """\
        [queue]
        subsystem = "inline"
        max_retries = 0
        retry_delay = "250ms"
        retry_delay_max = "1m"
        claim_timeout = "2h"
        [daemon]
        time_limit = 90
        soft_memory_limit = "200MB"
        [plugins]
        enabled = ["demo"]
        [sites]
        default = "example.org"
        require_file = true
        [log]
        level = "DEBUG"
        """,
    )

    config = load_config(path)

    assert config.queue.subsystem == "inline"
    assert config.queue.max_retries == 0
    assert config.queue.retry_delay == 0.25
    assert config.queue.retry_delay_max == 60.0
    assert config.queue.claim_timeout == 7200.0
    assert config.daemon.time_limit == 90.0
    assert config.daemon.soft_memory_limit == 200 << 20
    assert config.plugins.enabled == ["demo"]
    assert config.sites.default == "example.org"
    assert config.sites.require_file is True
    assert config.log.level == "DEBUG"


@pytest.mark.parametrize(
    ("text", "key"),
    [("bogus = 1\n", "bogus"), ("[queue]\nbogus = 1\n", "queue.bogus"), ("[nope]\nx = 1\n", "nope")],
)
def test_unknown_key_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "statusq.toml"

    err = config_error(path, text)

    assert err.file == str(path)
    assert err.key == key
    assert err.reason == "unknown key"
    assert str(err) == f"{path}: {key}: unknown key"
    assert err.exit_code == os.EX_CONFIG


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[queue]\nmax_retries = "many"\n', "queue.max_retries", "integer"),
        ("[queue]\nmax_retries = -1\n", "queue.max_retries", "greater than or equal to 0"),
        ('[queue]\nsubsystem = "kafka"\n', "queue.subsystem", "'db', 'stomp', 'memory' or 'inline'"),
        ('[daemon]\ntime_limit = "soon"\n', "daemon.time_limit", "'soon' is not a duration"),
        ("[daemon]\ntime_limit = true\n", "daemon.time_limit", "duration"),
        ('[queue]\nretry_delay = "-1s"\n', "queue.retry_delay", "not a duration"),
        ('[sites]\nrequire_file = "maybe"\n', "sites.require_file", "boolean"),
        ('[sites]\ndefault = "not a site"\n', "sites.default", "pattern"),
        ('[plugins]\npaths = "plugins"\n', "plugins.paths", "list"),
        ('[log]\nlevel = "LOUD"\n', "log.level", "DEBUG"),
    ],
)
def test_wrong_value_names_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "statusq.toml"

    err = config_error(path, text)

    assert err.file == str(path)
    assert err.key == key
    assert reason in err.reason


def test_several_wrong_values_are_all_reported(tmp_path: Path) -> None:
    err = config_error(tmp_path / "statusq.toml", '[queue]\nmax_retries = "x"\nbogus = 1\n')

    assert "queue.max_retries" in str(err)
    assert "queue.bogus" in str(err)


@pytest.mark.parametrize(
    "text",
    ["[daemon]\ntime_limit = [1]\n", "[daemon]\nsoft_memory_limit = 1.5\n", "[queue]\nretry_delay = {}\n"],
)
def test_wrong_type_of_duration_or_size_is_a_config_error(tmp_path: Path, text: str) -> None:
    config_error(tmp_path / "statusq.toml", text)


@pytest.mark.parametrize("text", ['queue = "abc"\n', "plugins = 5\n", "var_dir = 5\n", "queue = []\n"])
def test_wrong_type_of_section_is_a_config_error(tmp_path: Path, text: str) -> None:
    config_error(tmp_path / "statusq.toml", text)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "statusq.toml"

    err = config_error(path, "[queue\nmax_retries = 1\n")

    assert err.file == str(path)
    assert err.reason.startswith("not valid TOML")


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.file == str(path)
    assert caught.value.reason == "file not found"


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a folder, not a file


@pytest.mark.parametrize(("claim", "limit"), [("60s", "60s"), ("30s", "1m")])
def test_claim_timeout_must_outlive_the_time_limit(tmp_path: Path, claim: str, limit: str) -> None:
    text = f'[queue]\nclaim_timeout = "{claim}"\n[daemon]\ntime_limit = "{limit}"\n'

    err = config_error(tmp_path / "statusq.toml", text)

    assert "queue.claim_timeout" in err.reason
    assert "daemon.time_limit" in err.reason


def test_claim_timeout_must_outlive_the_time_limit_plus_its_grace(tmp_path: Path) -> None:
    # A handler ignoring SIGALRM runs until the supervisor's SIGKILL at time_limit + grace; a
    # claim expiring before that would hand its item to a second worker while it still runs.
    text = '[queue]\nclaim_timeout = "65s"\n[daemon]\ntime_limit = "60s"\ntime_limit_grace = "10s"\n'

    err = config_error(tmp_path / "statusq.toml", text)

    assert "daemon.time_limit_grace" in err.reason
    ok = '[queue]\nclaim_timeout = "71s"\n[daemon]\ntime_limit = "60s"\ntime_limit_grace = "10s"\n'
    assert load_config(write(tmp_path / "ok.toml", ok)).queue.claim_timeout == 71.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[metrics]\nlisten = "9464"\n', "metrics.listen"),
        ('[metrics]\nlisten = "127.0.0.1:99999"\n', "metrics.listen"),
        ('[metrics]\nsite_labels = "some"\n', "metrics.site_labels"),
        ('[metrics]\nstatsd = "localhost"\n', "metrics.statsd"),
        ('[web]\ntoken = "short"\n', "web.token"),
    ],
)
def test_bad_monitoring_settings_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    err = config_error(tmp_path / "statusq.toml", text)

    assert key in err.reason or key in str(err)


def test_claim_timeout_is_free_when_the_time_limit_is_off(tmp_path: Path) -> None:
    path = write(tmp_path / "statusq.toml", '[queue]\nclaim_timeout = "1s"\n[daemon]\ntime_limit = 0\n')

    assert load_config(path).queue.claim_timeout == 1.0


def test_statusq_config_env_is_used_without_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "from-env.toml", "[queue]\nmax_retries = 7\n")
    monkeypatch.setenv(defaults.CONFIG_ENV, str(path))

    config = load_config()

    assert config.source == str(path.resolve())
    assert config.queue.max_retries == 7


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(defaults.CONFIG_ENV, str(write(tmp_path / "env.toml", "[queue]\nmax_retries = 7\n")))
    explicit = write(tmp_path / "explicit.toml", "[queue]\nmax_retries = 1\n")

    assert load_config(explicit).queue.max_retries == 1


def test_system_config_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = write(tmp_path / "etc" / "statusq.toml", "[queue]\nmax_retries = 3\n")
    monkeypatch.setattr(defaults, "SYSTEM_CONFIG", str(system))

    assert load_config().queue.max_retries == 3


def test_config_built_in_code_validates_too() -> None:
    with pytest.raises(ValueError, match="claim_timeout"):
        Config.model_validate({"queue": {"claim_timeout": 1}, "daemon": {"time_limit": 5}})


# --- memory limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [('"50%"', "50%"), ('" 100% "', "100%"), ('"200MB"', 200 << 20), ("1024", 1024)]
)
def test_soft_memory_limit_keeps_percentages_and_converts_sizes(
    tmp_path: Path, value: str, expected: int | str
) -> None:
    path = write(tmp_path / "statusq.toml", f"[daemon]\nsoft_memory_limit = {value}\n")

    assert load_config(path).daemon.soft_memory_limit == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [('"150%"', "between 0 and 100"), ('"0%"', "between 0 and 100"), ('"lots%"', "lots"), ('"big"', "'big'")],
)
def test_soft_memory_limit_refuses_bad_values(tmp_path: Path, value: str, reason: str) -> None:
    err = config_error(tmp_path / "statusq.toml", f"[daemon]\nsoft_memory_limit = {value}\n")

    assert err.key == "daemon.soft_memory_limit"
    assert reason in err.reason


# --- site files -------------------------------------------------------------------------------


def test_load_site_takes_its_name_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sites" / "example.org.toml",
        """\
        enabled = false
        [settings.demo]
        greeting = "hi"
        """,
    )

    site = load_site(path)

    assert site.name == "example.org"
    assert site.enabled is False
    assert site.settings == {"demo": {"greeting": "hi"}}


def test_load_site_empty_file_is_an_enabled_site(tmp_path: Path) -> None:
    site = load_site(write(tmp_path / "plain.toml", ""))

    assert (site.name, site.enabled, site.settings) == ("plain", True, {})


def test_load_site_refuses_a_name_key(tmp_path: Path) -> None:
    path = write(tmp_path / "example.org.toml", 'name = "other.org"\n')

    with pytest.raises(ConfigError) as caught:
        load_site(path)

    assert caught.value.file == str(path)
    assert caught.value.key == "name"
    assert "unknown key" in caught.value.reason


@pytest.mark.parametrize(
    ("text", "key"),
    [("settings = 5\n", "settings"), ('enabled = "perhaps"\n', "enabled"), ("bogus = 1\n", "bogus")],
)
def test_load_site_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "example.org.toml", text)

    with pytest.raises(ConfigError) as caught:
        load_site(path)

    assert caught.value.file == str(path)
    assert caught.value.key == key


def test_load_site_refuses_a_file_name_that_is_no_site_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path / "not a site.toml", ""))

    assert caught.value.key == "name"


def test_concurrency_defaults_to_one_and_names_its_key_when_wrong(tmp_path: Path) -> None:
    assert Config().daemon.concurrency == 1
    err = config_error(tmp_path / "statusq.toml", "[daemon]\nconcurrency = 0\n")
    assert str(tmp_path / "statusq.toml") in str(err) and "daemon.concurrency" in str(err)


def test_a_transports_concurrency_may_not_exceed_the_workers(tmp_path: Path) -> None:
    text = "[daemon]\nconcurrency = 4\n[transports.push]\nconcurrency = 8\n"

    err = config_error(tmp_path / "statusq.toml", text)

    assert "transports.push.concurrency" in err.reason and "daemon.concurrency" in err.reason
    ok = load_config(write(tmp_path / "ok.toml", text.replace("= 8", "= 2")))
    assert ok.concurrency_of("push") == 2 and ok.concurrency_of("other") == 4
    # --concurrency below a transport's cap holds the cap to it
    assert ok.with_concurrency(1).concurrency_of("push") == 1


def test_the_prefetch_window_follows_concurrency_unless_set(tmp_path: Path) -> None:
    assert Config().prefetch == defaults.STOMP_PREFETCH
    many = load_config(write(tmp_path / "a.toml", "[daemon]\nconcurrency = 200\n"))
    assert many.prefetch == defaults.prefetch_for(200) > defaults.STOMP_PREFETCH
    assert Config().with_concurrency(200).prefetch == many.prefetch
    fixed = load_config(write(tmp_path / "b.toml", "[daemon]\nconcurrency = 200\n[queue.stomp]\nprefetch = 10\n"))
    assert fixed.prefetch == 10


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[queue.stomp]\nqueue_type = "stream"\n', "'classic' or 'quorum'"),
        ('[queue.stomp]\nqueue_type = "quorum"\nflavor = "activemq"\n', "ActiveMQ"),
        ('[queue.stomp]\nqueue_type = "quorum"\nmax_priority = 5\n', "no priorities before 4.0"),
    ],
)
def test_a_queue_type_rabbitmq_cannot_serve_is_refused_at_load(tmp_path: Path, text: str, reason: str) -> None:
    err = config_error(tmp_path / "statusq.toml", text)

    assert err.key is not None and err.key.startswith("queue.stomp")
    assert reason in err.reason


def test_quorum_takes_the_default_priority_or_none(tmp_path: Path) -> None:
    default = load_config(write(tmp_path / "a.toml", '[queue.stomp]\nqueue_type = "quorum"\n'))
    none = load_config(write(tmp_path / "b.toml", '[queue.stomp]\nqueue_type = "quorum"\nmax_priority = 0\n'))

    assert default.queue.stomp.queue_type == none.queue.stomp.queue_type == "quorum"
    assert load_config(write(tmp_path / "c.toml", "")).queue.stomp.queue_type == "classic"
