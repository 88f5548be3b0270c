"""acs.config: TOML -> validated dataclasses; defaults equal config.example.toml."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from twisted.internet import task

from acs.config import Config, ConfigError, StorageConfig, load_config, parse_config
from acs.service import Appliance

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acs.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_defaults_equal_config_example() -> None:
    assert load_config(EXAMPLE) == Config()


def test_config_example_sets_every_key_of_every_section() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for section in ("storage", "cwmp", "api", "files", "retention"):
        expected = set(getattr(Config(), section).__dataclass_fields__)
        assert set(data[section]) == expected, section


def test_no_path_and_no_env_gives_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACS_CONFIG", raising=False)
    assert load_config() == Config()


def test_acs_config_env_is_used_when_no_path_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, '[cwmp]\nlisten = "tcp:17547"\n')
    monkeypatch.setenv("ACS_CONFIG", str(path))
    assert load_config().cwmp.listen == "tcp:17547"


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_CONFIG", str(tmp_path / "missing.toml"))
    path = _write(tmp_path, "[api]\nupdate_status_timeout = 9\n")
    assert load_config(path).api.update_status_timeout == 9


def test_partial_section_keeps_other_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "[cwmp]\nauto_register = false\n"))
    assert config.cwmp.auto_register is False
    assert config.cwmp.listen == "tcp:7547"
    assert config.storage == Config().storage


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cwmpp]\n", "unknown section [cwmpp]"),
        ("[cwmp]\nlisten_port = 1\n", "unknown key 'listen_port'"),
        ("[cwmp]\nsession_timeout = true\n", "session_timeout must be int"),
        ('[cwmp]\nsession_timeout = "30"\n', "session_timeout must be int"),
        ("[cwmp]\nsession_timeout = 0\n", "session_timeout must be > 0"),
        ("[cwmp]\nconnection_request_timeout = -1\n", "must be > 0"),
        ('[cwmp]\nauto_register = "yes"\n', "auto_register must be bool"),
        ("[cwmp]\nmax_sessions = 0\n", "max_sessions must be > 0"),
        ("[cwmp]\nmax_sessions = true\n", "max_sessions must be int"),
        ('[cwmp]\nlisten = ""\n', "listen must not be empty"),
        ('[cwmp]\ndefault_organization = "  "\n', "default_organization must not be empty"),
        ('[storage]\ndatabase = ""\n', "database must not be empty"),
        ("[files]\nurl_ttl = 0\n", "url_ttl must be > 0"),
        ('[files]\npublic_url = "ftp://x"\n', "public_url must be an http"),
        ('[files]\npublic_url = "127.0.0.1:7567"\n', "public_url must be an http"),
        ("cwmp = 3\n", "[cwmp] must be a table"),
        ("[retention]\nhistory_days = 0\n", "[retention] history_days must be between 1 and 3650"),
        ("[retention]\ntranscript_days = 3651\n", "transcript_days must be between 1 and 3650"),
        ("[retention]\nfinished_task_days = -1\n", "finished_task_days must be between 1"),
        ("[retention]\nfinished_task_days = 1.5\n", "finished_task_days must be int"),
        ("[retention]\nhistory_per_device = 99\n", "must be between 100 and 100000"),
        ("[retention]\nhistory_per_device = 100001\n", "must be between 100 and 100000"),
        ("[retention]\nkeep_days = 1\n", "[retention] unknown key 'keep_days'"),
        ("[tasks]\nmax_attempts = 0\n", "[tasks] max_attempts must be between 1 and 100"),
        ("[tasks]\nretry_base = 86401\n", "retry_base must be between 1 and 86400"),
        ("[storage]\npool_size = 0\n", "pool_size must be between 1 and 64"),
        ("[storage]\npool_size = 65\n", "pool_size must be between 1 and 64"),
        ("[tasks]\npermanent_faults = 9000\n", "must be a list of CPE fault codes"),
        ("[tasks]\npermanent_faults = [8005]\n", "8005 is not a CPE fault code"),
        ("[tasks]\npermanent_faults = [true]\n", "True is not a CPE fault code"),
        ('[tasks]\npermanent_faults = ["9000"]\n', "'9000' is not a CPE fault code"),
    ],
)
def test_invalid_values_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert message in str(info.value)


def test_malformed_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cwmp\n")
    with pytest.raises(ConfigError, match=r"acs\.toml"):
        load_config(path)


def test_binary_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "acs.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_https_public_url_is_accepted() -> None:
    config = parse_config({"files": {"public_url": "https://acs.example.net:7567"}})
    assert config.files.public_url == "https://acs.example.net:7567"


def test_retention_limits_are_accepted_at_their_bounds(tmp_path: Path) -> None:
    text = "[retention]\nhistory_days = 3650\ntranscript_days = 1\nhistory_per_device = 100\n"
    retention = load_config(_write(tmp_path, text)).retention
    assert (retention.history_days, retention.transcript_days) == (3650, 1)
    assert (retention.history_per_device, retention.finished_task_days) == (100, 30)


def test_max_sessions_defaults_to_the_example_and_can_be_set(tmp_path: Path) -> None:
    assert Config().cwmp.max_sessions == 128
    assert load_config(_write(tmp_path, "[cwmp]\nmax_sessions = 50\n")).cwmp.max_sessions == 50


def test_connection_request_networks_are_cidr_strings() -> None:
    config = parse_config({"cwmp": {"connection_request_networks": ["10.64.0.0/10", "::1"]}})
    assert [str(n) for n in config.cwmp.connection_request_networks] == ["10.64.0.0/10", "::1/128"]
    for bad in (["10.0.0.300/8"], "10.0.0.0/8", [7]):
        with pytest.raises(ConfigError, match="connection_request_networks"):
            parse_config({"cwmp": {"connection_request_networks": bad}})


def test_the_task_retry_policy_reaches_the_engine(tmp_path: Path) -> None:
    text = "[tasks]\nmax_attempts = 5\nretry_base = 10\npermanent_faults = [9002, 9002, 9000]\n"
    config = load_config(_write(tmp_path, text))
    assert config.tasks.permanent_faults == (9000, 9002)
    config = replace(config, storage=StorageConfig(database=":memory:", files=str(tmp_path)))
    appliance = Appliance(config, task.Clock())
    try:
        engine = appliance.tasks
        assert (engine.max_attempts, engine.retry_base) == (5, 10.0)
        assert engine.permanent_faults == {9000, 9002}
        assert engine.retry_at(1, now=0.0) == 10.0 and engine.retry_at(5, now=0.0) is None
    finally:
        appliance.close()
