"""``ServiceConfig``'s bounds on long-polls and connections: bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric.errors import ConfigError
from service.config import ServiceConfig


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
