from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from offload import ConfigError, InlineExecutor, OffloadConfig, TaskReport, register_executor
from offload._config import _KINDS, FIELD_NAMES, _edit_distance, available_cpus


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


def test_from_env_rejects_a_typo_of_a_field_suggesting_the_field() -> None:
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


# Variables that name no field, and exceptions that must not escape as they are

#: What Kubernetes sets in every pod of a namespace with a service named offload.
KUBERNETES_SERVICE_VARIABLES = {
    "OFFLOAD_SERVICE_HOST": "10.0.0.11",
    "OFFLOAD_SERVICE_PORT": "80",
    "OFFLOAD_SERVICE_PORT_HTTP": "80",
    "OFFLOAD_PORT": "tcp://10.0.0.11:80",
    "OFFLOAD_PORT_80_TCP": "tcp://10.0.0.11:80",
    "OFFLOAD_PORT_80_TCP_PROTO": "tcp",
    "OFFLOAD_PORT_80_TCP_PORT": "80",
    "OFFLOAD_PORT_80_TCP_ADDR": "10.0.0.11",
}


def test_from_env_ignores_an_orchestrators_variables_with_one_warning() -> None:
    environ = {**KUBERNETES_SERVICE_VARIABLES, "OFFLOAD_THREAD_LIMIT": "4"}
    with pytest.warns(UserWarning, match="name no config field") as caught:
        config = OffloadConfig.from_env(environ)
    assert config.thread_limit == 4
    assert len(caught) == 1
    message = str(caught[0].message)
    assert all(repr(name) in message for name in KUBERNETES_SERVICE_VARIABLES)
    assert "10.0.0.11" not in message  # names only: another program's values may be secrets
    assert caught[0].filename == __file__  # it points at the caller of from_env


def test_from_env_warns_about_an_unknown_variable_without_its_value() -> None:
    with pytest.warns(UserWarning, match="OFFLOAD_DATABASE_PASSWORD") as caught:
        config = OffloadConfig.from_env({"OFFLOAD_DATABASE_PASSWORD": "hunter2"})
    assert config == OffloadConfig()
    assert "hunter2" not in str(caught[0].message)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("OFFLOAD_THREADLIMIT", "OFFLOAD_THREAD_LIMIT"),  # one letter dropped
        ("OFFLOAD_RETRIE", "OFFLOAD_RETRIES"),  # one letter dropped
        ("OFFLOAD_RETRIESS", "OFFLOAD_RETRIES"),  # one letter added
        ("OFFLOAD_ON_ERORR", "OFFLOAD_ON_ERROR"),  # two letters changed
        ("OFFLOAD_DETACHED", "OFFLOAD_DETACH"),  # two letters added
        ("offload_thread_limt".upper(), "OFFLOAD_THREAD_LIMIT"),
    ],
)
def test_from_env_rejects_a_variable_two_letters_from_a_field(name: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        OffloadConfig.from_env({name: "hunter2"})
    message = str(caught.value)
    assert message.startswith(f"unknown config key {name!r} (did you mean {field}?); valid keys")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("port", "on_report", 5),  # so Kubernetes' OFFLOAD_PORT is no typo of on_report
        ("threadlimit", "thread_limit", 1),
        ("retrie", "retries", 1),
        ("kitten", "sitting", 3),
        ("ab", "ba", 2),  # a swap is two changes
        ("", "detach", 6),
        ("detach", "detach", 0),
    ],
)
def test_edit_distance_counts_letters_added_dropped_or_changed(
    a: str, b: str, distance: int
) -> None:
    assert _edit_distance(a, b) == distance
    assert _edit_distance(b, a) == distance


def test_no_variable_kubernetes_sets_is_within_two_letters_of_a_field() -> None:
    for name in KUBERNETES_SERVICE_VARIABLES:
        key = name.removeprefix("OFFLOAD_").lower()
        assert min(_edit_distance(key, field) for field in FIELD_NAMES) > 2, name


def test_from_mapping_stays_strict_about_names_that_are_no_typo() -> None:
    with pytest.raises(ConfigError, match="^unknown config key 'port'; valid keys are: "):
        OffloadConfig.from_mapping({"port": 80})


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("os.path", "a colon must come between the module and the callable"),
        ("nosuchmodule.func", "a colon must come between the module and the callable"),
        ("os:", "a colon must come between the module and the callable"),
        ("os:nothing", "module 'os' has no 'nothing'"),
        ("os:path", "it is a module, which cannot be called"),
        ("os:sep", "it is a str, which cannot be called"),
        ("nosuchmodule:func", "importing 'nosuchmodule' failed: ModuleNotFoundError: "),
        (".relative:func", "importing '.relative' failed: TypeError: "),
    ],
)
def test_a_bad_on_report_path_is_a_config_error_naming_the_variable(
    path: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        OffloadConfig.from_env({"OFFLOAD_ON_REPORT": path})
    assert str(caught.value).startswith(
        f"OFFLOAD_ON_REPORT must be an import path like 'package.module:function', "
        f"got {path!r} ({problem}"
    )
    with pytest.raises(ConfigError, match="^on_report must be an import path like "):
        OffloadConfig.from_mapping({"on_report": path})


def test_an_on_report_module_that_fails_to_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "offload_broken_hooks.py").write_text("raise RuntimeError('no database')\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ConfigError, match="importing 'offload_broken_hooks' failed: Runtime"):
        OffloadConfig.from_env({"OFFLOAD_ON_REPORT": "offload_broken_hooks:record"})


@pytest.mark.parametrize("mapping", [{3: 1}, {3: 1, "threads": 2}, {None: 1}])
def test_from_mapping_rejects_a_key_that_is_not_a_string(mapping: dict[Any, int]) -> None:
    with pytest.raises(ConfigError, match="^config keys must be field names \\(strings\\), got "):
        OffloadConfig.from_mapping(mapping)


@pytest.mark.parametrize("mapping", [[("thread_limit", 8)], None, "thread_limit=8"])
def test_from_mapping_rejects_what_is_not_a_mapping(mapping: Any) -> None:
    with pytest.raises(ConfigError, match="^from_mapping needs a mapping of field names to values"):
        OffloadConfig.from_mapping(mapping)


def test_from_env_skips_names_that_are_not_strings() -> None:
    environ: dict[Any, str] = {3: "x", "OFFLOAD_RETRIES": "2"}
    assert OffloadConfig.from_env(environ).retries == 2


@pytest.mark.parametrize(
    ("name", "meant"),
    [("Process", "process"), ("threads", "thread"), ("INLINE", "inline"), ("proces", "process")],
)
def test_an_executor_name_near_a_known_one_fails_when_the_config_is_made(
    name: str, meant: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^unknown executor '{name}'; .* mean '{meant}'\?$"):
        OffloadConfig(executor=name)


def test_an_executor_name_near_a_known_one_fails_from_env_and_replace() -> None:
    with pytest.raises(ConfigError, match="did you mean 'thread'"):
        OffloadConfig.from_env({"OFFLOAD_EXECUTOR": "Thread"})
    with pytest.raises(ConfigError, match="did you mean 'process'"):
        OffloadConfig().replace(executor="processes")


@pytest.mark.parametrize("name", ["gpu", "nowhere", "proc", "by_config"])
def test_an_executor_name_near_no_known_one_may_be_registered_later(name: str) -> None:
    assert OffloadConfig(executor=name).executor == name


def test_executor_names_registered_so_far_are_known_to_the_config() -> None:
    register_executor("gpu_pool", InlineExecutor)
    assert OffloadConfig(executor="gpu_pool").executor == "gpu_pool"
    with pytest.raises(ConfigError, match="did you mean 'gpu_pool'"):
        OffloadConfig(executor="GPU_pool")
    # A name near a known one is the app's own once it is registered.
    register_executor("threads", InlineExecutor)
    assert OffloadConfig(executor="threads").executor == "threads"
