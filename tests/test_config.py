from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from offload import ConfigError, OffloadConfig, TaskReport
from offload._config import _KINDS, FIELD_NAMES, available_cpus


def record(report: TaskReport) -> None:
    """An importable on_report hook for the env tests."""


def test_defaults_match_the_design() -> None:
    config = OffloadConfig()
    assert config.executor == "auto"
    assert config.on_error == "raise"
    assert config.concurrency == "sequential"
    assert config.thread_limit == 40
    assert config.process_workers == available_cpus()
    assert config.start_method == "forkserver"  # the suite runs on Linux
    assert config.preload == ()
    assert config.max_tasks_per_child is None
    assert config.task_timeout is None
    assert (config.retries, config.retry_backoff) == (0, 0.5)
    assert config.detach is False
    assert config.max_pending is None
    assert config.shutdown_timeout == 30.0
    assert config.on_report is None


def test_config_is_frozen_and_keyword_only() -> None:
    config = OffloadConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.thread_limit = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        OffloadConfig("inline")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"thread_limit": 0}, "thread_limit must be an int >= 1, got 0"),
        ({"thread_limit": True}, "thread_limit must be an int >= 1, got True"),
        ({"on_error": "ignore"}, "on_error must be one of 'raise', 'stop', 'continue', 'collect'"),
        ({"concurrency": "parallel"}, "concurrency must be one of 'sequential', 'group'"),
        (
            {"task_timeout": -1},
            "task_timeout must be a finite number of seconds > 0, or None, got -1",
        ),
        ({"task_timeout": 0}, "task_timeout must be a finite number of seconds > 0"),
        ({"task_timeout": float("nan")}, "task_timeout must be a finite number of seconds > 0"),
        ({"shutdown_timeout": float("inf")}, "shutdown_timeout must be a finite number >= 0"),
        ({"process_workers": 0}, "process_workers must be an int >= 1"),
        ({"start_method": "clone"}, "start_method must be one of"),
        ({"preload": ["json"]}, "preload must be a tuple of module names"),
        ({"max_tasks_per_child": 0}, "max_tasks_per_child must be an int >= 1, or None"),
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"retry_backoff": -0.5}, "retry_backoff must be a finite number >= 0"),
        ({"detach": "yes"}, "detach must be True or False"),
        ({"max_pending": 0}, "max_pending must be an int >= 1, or None"),
        ({"shutdown_timeout": -1.0}, "shutdown_timeout must be a finite number >= 0"),
        ({"on_report": "print"}, "on_report must be a callable or None"),
        ({"executor": ""}, "executor must be a non-empty executor name"),
    ],
)
def test_bad_values_are_rejected_with_the_rule_and_the_value(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        OffloadConfig(**changes)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="thread_limit"):
        OffloadConfig(thread_limit=-3)


def test_replace_validates_and_keeps_the_rest() -> None:
    config = OffloadConfig(thread_limit=8)
    changed = config.replace(on_error="continue")
    assert (changed.thread_limit, changed.on_error) == (8, "continue")
    with pytest.raises(ConfigError, match="on_error must be one of"):
        config.replace(on_error="ignore")


def test_replace_rejects_unknown_fields_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'thread_limt' \(did you mean "):
        OffloadConfig().replace(thread_limt=3)


def test_from_mapping_takes_typed_values_and_strings() -> None:
    config = OffloadConfig.from_mapping(
        {"thread_limit": "8", "task_timeout": 2.5, "preload": "json, csv", "detach": "true"}
    )
    assert config.thread_limit == 8
    assert config.task_timeout == 2.5
    assert config.preload == ("json", "csv")
    assert config.detach is True


def test_from_mapping_rejects_unknown_keys_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        OffloadConfig.from_mapping({"threads": 4, "executor": "thread"})
    message = str(caught.value)
    assert message.startswith("unknown config key 'threads'")
    assert "valid keys are: " + ", ".join(sorted(FIELD_NAMES)) in message


def test_from_env_reads_prefixed_variables() -> None:
    environ = {
        "OFFLOAD_EXECUTOR": "thread",
        "OFFLOAD_THREAD_LIMIT": "4",
        "OFFLOAD_TASK_TIMEOUT": "none",
        "OFFLOAD_MAX_PENDING": "100",
        "OFFLOAD_SHUTDOWN_TIMEOUT": "2.5",
        "OFFLOAD_DETACH": "off",
        "OFFLOAD_ON_REPORT": "test_config:record",
        "HOME": "/root",
    }
    config = OffloadConfig.from_env(environ)
    assert config.executor == "thread"
    assert config.thread_limit == 4
    assert config.task_timeout is None
    assert config.max_pending == 100
    assert config.shutdown_timeout == 2.5
    assert config.detach is False
    assert config.on_report is record


def test_from_env_uses_os_environ_and_a_custom_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_RETRIES", "3")
    assert OffloadConfig.from_env(prefix="MYAPP_").retries == 3


def test_from_env_rejects_unknown_variables_naming_them() -> None:
    with pytest.raises(ConfigError) as caught:
        OffloadConfig.from_env({"OFFLOAD_THREADLIMIT": "4"})
    message = str(caught.value)
    assert (
        "unknown config key 'OFFLOAD_THREADLIMIT' (did you mean OFFLOAD_THREAD_LIMIT?)" in message
    )
    assert "OFFLOAD_SHUTDOWN_TIMEOUT" in message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OFFLOAD_THREAD_LIMIT", "many", "OFFLOAD_THREAD_LIMIT must be an integer, got 'many'"),
        ("OFFLOAD_TASK_TIMEOUT", "soon", "OFFLOAD_TASK_TIMEOUT must be a number, got 'soon'"),
        ("OFFLOAD_DETACH", "maybe", "OFFLOAD_DETACH must be true or false, got 'maybe'"),
        ("OFFLOAD_ON_REPORT", "print", "OFFLOAD_ON_REPORT must be an import path"),
        ("OFFLOAD_ON_REPORT", "nowhere:hook", "OFFLOAD_ON_REPORT must be an import path"),
        ("OFFLOAD_THREAD_LIMIT", "0", "thread_limit must be an int >= 1, got 0"),
    ],
)
def test_from_env_rejects_bad_values_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        OffloadConfig.from_env({name: value})


def test_every_field_can_be_parsed_from_a_string() -> None:
    assert set(_KINDS) == set(FIELD_NAMES)


def test_an_empty_or_none_env_value_means_none_for_optional_fields() -> None:
    config = OffloadConfig.from_env({"OFFLOAD_DASK_ADDRESS": "", "OFFLOAD_MAX_PENDING": "None"})
    assert (config.dask_address, config.max_pending) == (None, None)


def test_from_mapping_takes_a_toml_array_for_preload() -> None:
    assert OffloadConfig.from_mapping({"preload": ["json", "csv"]}).preload == ("json", "csv")


def test_from_env_refuses_nan() -> None:
    with pytest.raises(ConfigError, match="task_timeout must be a finite number"):
        OffloadConfig.from_env({"OFFLOAD_TASK_TIMEOUT": "nan"})
