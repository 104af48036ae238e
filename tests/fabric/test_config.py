"""Unit tests for fabric.config: validation with ConfigError, JSON round trips."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from fabric.config import InterchangeConfig, ManagerConfig
from fabric.errors import ConfigError
from fabric.sandbox import default_hidden

MANAGER_REQUIRED = {"interchange_address": "tcp://127.0.0.1:54001", "manager_id": "manager-1"}
INTERCHANGE_REQUIRED = {"upstream_address": "tcp://127.0.0.1:55001", "endpoint_id": "endpoint-1"}


def manager(**overrides: Any) -> ManagerConfig:
    return ManagerConfig(**{**MANAGER_REQUIRED, **overrides})


def interchange(**overrides: Any) -> InterchangeConfig:
    return InterchangeConfig(**{**INTERCHANGE_REQUIRED, **overrides})


# --- ManagerConfig ----------------------------------------------------------------------------


def test_manager_defaults() -> None:
    config = manager()
    assert config.workers == 1
    assert config.prefetch is None
    assert config.accelerators is None
    assert config.cpu_affinity == "none"
    assert config.heartbeat_threshold >= 2 * config.heartbeat_period


@pytest.mark.parametrize(
    "overrides",
    [
        {"workers": 8}, {"prefetch": 0}, {"prefetch": 100}, {"accelerators": ["0", "1"]}, {"accelerators": []},
        {"cpu_affinity": "block"}, {"cpu_affinity": "list:0,1:2,3"},
        {"heartbeat_period": 0.5, "heartbeat_threshold": 1},
        {"heartbeat_period": 1, "heartbeat_threshold": 2}, {"block_id": "block-1"}, {"python": "/usr/bin/python3"},
    ],
    ids=repr,
)
def test_valid_manager_configs(overrides: dict[str, Any]) -> None:
    config = manager(**overrides)
    for name, value in overrides.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize(
    "overrides",
    [
        {"workers": 0}, {"workers": -1}, {"workers": 1.5}, {"workers": "4"}, {"workers": None},
        {"prefetch": -1}, {"prefetch": 1.5}, {"prefetch": "2"},
        {"heartbeat_period": 0}, {"heartbeat_period": -1}, {"heartbeat_period": "2"},
        {"heartbeat_threshold": 0}, {"heartbeat_threshold": None},
        {"heartbeat_period": 2, "heartbeat_threshold": 3.9},
    ],
    ids=repr,
)
def test_invalid_manager_configs(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        manager(**overrides)


@pytest.mark.parametrize("field", ["heartbeat_period", "heartbeat_threshold"])
def test_nan_heartbeat_is_refused(field: str) -> None:
    """NaN compares false with everything, so ``value <= 0`` and ``threshold < 2 * period`` let it through."""
    with pytest.raises(ConfigError):
        manager(**{field: float("nan")})
    with pytest.raises(ConfigError):
        interchange(**{field: float("nan")})


@pytest.mark.parametrize(
    "overrides",
    [{"interchange_address": 54001}, {"interchange_address": None}, {"manager_id": 7}, {"accelerators": "0,1"},
     {"accelerators": [0, 1]}],
    ids=repr,
)
def test_manager_values_of_the_wrong_type_are_refused(overrides: dict[str, Any]) -> None:
    """The module docstring: "Every value is checked in ``__post_init__``"."""
    with pytest.raises(ConfigError):
        manager(**overrides)


def test_manager_required_fields() -> None:
    with pytest.raises(TypeError):
        ManagerConfig(manager_id="m")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ManagerConfig("tcp://x", "m")  # type: ignore[misc]  # keyword-only


def test_manager_config_is_frozen() -> None:
    config = manager()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides", [{}, {"workers": 4, "prefetch": 2, "accelerators": ["0", "1"], "cpu_affinity": "alternating",
                       "heartbeat_period": 0.25, "heartbeat_threshold": 1.0, "block_id": "b", "python": "py"}],
    ids=["defaults", "everything"],
)
def test_manager_json_round_trip(overrides: dict[str, Any]) -> None:
    config = manager(**overrides)
    text = config.to_json()
    assert isinstance(json.loads(text), dict)
    assert ManagerConfig.from_json(text) == config


# --- InterchangeConfig --------------------------------------------------------------------------


def test_interchange_defaults() -> None:
    config = interchange()
    assert config.manager_port == 0
    assert config.manager_port_range == (54000, 55000)
    assert config.local_managers == 1
    assert config.workers_per_manager == 1
    assert config.exit_with_upstream is True
    assert config.spool_dir is None and not config.service_mode
    assert config.upstream_server_key is config.upstream_public_key is config.upstream_secret_key is None
    assert config.allowed_functions is None  # any function


KEYS = {"upstream_server_key": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
        "upstream_public_key": "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
        "upstream_secret_key": "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"}


def test_curve_keys_and_service_mode() -> None:
    config = interchange(**KEYS, spool_dir="/tmp/spool", exit_with_upstream=False)
    assert config.service_mode
    assert InterchangeConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "overrides",
    [
        {"upstream_server_key": KEYS["upstream_server_key"]},
        {k: v for k, v in KEYS.items() if k != "upstream_secret_key"},
        {**KEYS, "upstream_public_key": "too short"},
        {**KEYS, "upstream_secret_key": "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%c,"},  # ',' is not z85
        {**KEYS, "upstream_server_key": b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"},
        {"spool_dir": "/tmp/spool"},  # service mode must not exit with its upstream
        {"spool_dir": "", "exit_with_upstream": False},
        {"spool_dir": 3, "exit_with_upstream": False},
    ],
    ids=repr,
)
def test_invalid_keys_and_spool_settings(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        interchange(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"local_managers": 0}, {"local_managers": 3}, {"workers_per_manager": 16}, {"manager_port": 54321},
        {"manager_port_range": (1, 65535)}, {"prefetch": 0}, {"max_message_bytes": 1024},
        {"exit_with_upstream": False}, {"accelerators": ["GPU-0"]}, {"allowed_functions": None},
        {"allowed_functions": []}, {"allowed_functions": ["0f" * 16, "another"]},
    ],
    ids=repr,
)
def test_valid_interchange_configs(overrides: dict[str, Any]) -> None:
    config = interchange(**overrides)
    for name, value in overrides.items():
        assert getattr(config, name) == value


def test_port_range_list_becomes_a_tuple() -> None:
    assert interchange(manager_port_range=[100, 200]).manager_port_range == (100, 200)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {"local_managers": -1}, {"local_managers": 1.0}, {"workers_per_manager": 0}, {"workers_per_manager": "2"},
        {"max_message_bytes": 0}, {"max_message_bytes": -5}, {"heartbeat_period": 0},
        {"heartbeat_period": 5, "heartbeat_threshold": 9}, {"manager_port_range": (0, 100)},
        {"manager_port_range": (200, 100)}, {"manager_port_range": (100, 100)}, {"manager_port_range": (1, 65536)},
        {"allowed_functions": "0f0f"}, {"allowed_functions": [""]}, {"allowed_functions": ["ok", 7]},
        {"allowed_functions": ("ok",)}, {"allowed_functions": [None]},
    ],
    ids=repr,
)
def test_invalid_interchange_configs(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        interchange(**overrides)


@pytest.mark.parametrize("port", [-1, 65536, 100000, 1.5, "54000"], ids=repr)
def test_invalid_manager_port_is_refused(port: Any) -> None:
    with pytest.raises(ConfigError):
        interchange(manager_port=port)


@pytest.mark.parametrize("prefetch", [-1, 1.5, "2"], ids=repr)
def test_invalid_interchange_prefetch_is_refused_where_written(prefetch: Any) -> None:
    """Otherwise the bad value only fails later, in ``manager_config``, when managers start."""
    with pytest.raises(ConfigError):
        interchange(prefetch=prefetch)


@pytest.mark.parametrize("port_range", [[1, 2, 3], [1], [], "54000-55000"], ids=repr)
def test_port_range_of_the_wrong_length_is_a_config_error(port_range: Any) -> None:
    """Unpacking ``low, high`` raises a plain ValueError, which ``from_dict`` does not translate."""
    with pytest.raises(ConfigError):
        InterchangeConfig.from_dict({**INTERCHANGE_REQUIRED, "manager_port_range": port_range})


@pytest.mark.parametrize(
    "overrides", [{}, {"manager_host": "0.0.0.0", "manager_port": 54100, "manager_port_range": (50000, 50100),
                       "local_managers": 2, "workers_per_manager": 4, "prefetch": 8, "accelerators": ["0"],
                       "cpu_affinity": "block", "heartbeat_period": 1.0, "heartbeat_threshold": 5.0,
                       "max_message_bytes": 2**20, "exit_with_upstream": False, "allowed_functions": ["f"]}],
    ids=["defaults", "everything"],
)
def test_interchange_json_round_trip(overrides: dict[str, Any]) -> None:
    config = interchange(**overrides)
    assert InterchangeConfig.from_json(config.to_json()) == config


def test_interchange_makes_manager_configs() -> None:
    config = interchange(workers_per_manager=3, prefetch=5, accelerators=["0", "1"], cpu_affinity="block",
                         heartbeat_period=0.5, heartbeat_threshold=2.0)
    made = config.manager_config("manager-4", "tcp://127.0.0.1:54002")
    assert made == ManagerConfig(interchange_address="tcp://127.0.0.1:54002", manager_id="manager-4", workers=3,
                                 prefetch=5, accelerators=["0", "1"], cpu_affinity="block", heartbeat_period=0.5,
                                 heartbeat_threshold=2.0, sandbox_workers=None, hidden_paths=default_hidden())


# --- JSON and dict constructors --------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "required"),
                         [(ManagerConfig, MANAGER_REQUIRED), (InterchangeConfig, INTERCHANGE_REQUIRED)])
def test_unknown_keys_are_rejected(cls: Any, required: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        cls.from_dict({**required, "wokers": 4})
    with pytest.raises(ConfigError, match="unknown"):
        cls.from_json(json.dumps({**required, "extra": None}))


@pytest.mark.parametrize("cls", [ManagerConfig, InterchangeConfig])
@pytest.mark.parametrize("text", ["", "{", "not json", "[1, 2]", "null", "3", '"text"'], ids=repr)
def test_from_json_of_non_objects_raises_config_error(cls: Any, text: str) -> None:
    with pytest.raises(ConfigError):
        cls.from_json(text)


@pytest.mark.parametrize("cls", [ManagerConfig, InterchangeConfig])
def test_missing_required_keys_raise_config_error(cls: Any) -> None:
    with pytest.raises(ConfigError):
        cls.from_dict({})


def test_invalid_values_from_json_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        ManagerConfig.from_json(json.dumps({**MANAGER_REQUIRED, "workers": 0}))
    with pytest.raises(ConfigError):
        InterchangeConfig.from_json(json.dumps({**INTERCHANGE_REQUIRED, "manager_port_range": 54000}))


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        manager(workers=0)
