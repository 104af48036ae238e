"""``ServiceConfig`` is checked by the machinery of the other configurations
(``fabric.config.JsonConfig``): unknown settings and values of the wrong type are a
``ConfigError`` naming the setting, and the JSON round trip gives the same configuration.
Its bounds on long-polls and connections: bad values are refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fabric.errors import ConfigError
from service.config import ServiceConfig


def test_json_round_trip(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=str(tmp_path), port=0, rate_limit=5, forwarder_public_address="tcp://a:1")
    assert ServiceConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("setting", [
    {"port": True},                        # a bool is no port number
    {"host": 8470},
    {"forwarder_public_address": 3},
    {"threads": 2.5},
    {"rate_limit": "fast"},
    {"identity": None},
])
def test_a_value_of_the_wrong_type_names_its_setting(tmp_path: Path, setting: dict[str, Any]) -> None:
    [name] = setting
    with pytest.raises(ConfigError, match=f"ServiceConfig.{name}: "):
        ServiceConfig.from_dict({"data_dir": str(tmp_path), **setting})


def test_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown settings \['prot'\]"):
        ServiceConfig.from_dict({"data_dir": str(tmp_path), "prot": 1})


def test_a_settings_file_is_checked_the_same_way(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"host": ["127.0.0.1"]}')
    with pytest.raises(ConfigError, match="ServiceConfig.host: "):
        ServiceConfig.from_file(settings, data_dir=str(tmp_path))


@pytest.mark.parametrize(("setting", "value"), [("max_polls", 16), ("max_polls", -1), ("max_polls_per_user", 0),
                                                 ("max_connections", 0), ("max_connections_per_peer", True),
                                                 ("idle_timeout", 0.0), ("idle_timeout", float("nan"))])
def test_bad_long_poll_and_connection_bounds_are_refused(tmp_path: Path, setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        ServiceConfig(data_dir=str(tmp_path), **{setting: value})  # type: ignore[arg-type]


def test_long_polls_may_take_half_the_threads_unless_told(tmp_path: Path) -> None:
    assert ServiceConfig(data_dir=str(tmp_path), threads=16).poll_capacity == 8
    assert ServiceConfig(data_dir=str(tmp_path), threads=1).poll_capacity == 1
    assert ServiceConfig(data_dir=str(tmp_path), threads=32, max_polls=30).poll_capacity == 30
