"""End to end: an endpoint's allow-list (``allowed_functions``) with a real interchange,
manager and worker. Allowed functions run; any other function's task never reaches a
worker and its future raises ``FunctionNotAllowed``."""

from __future__ import annotations

from pathlib import Path

import e2e_functions as fns
import pytest
from tests.support import TIMEOUT

import fabric
from fabric.errors import ConfigError
from fabric.serialize import serialize_function


def function_id(fn: object) -> str:
    return serialize_function(fn)[0]  # type: ignore[arg-type]


def test_only_allowed_functions_run(make_endpoint, tmp_path: Path) -> None:
    endpoint = make_endpoint(allowed_functions=[function_id(fns.write_marker), function_id(fns.affine)])
    refused_marker, allowed_marker = tmp_path / "refused", tmp_path / "allowed"

    refused = [endpoint.submit(fns.write_marker_too, str(refused_marker)) for _ in range(3)]
    mixed = [endpoint.submit(fns.affine, x) if x % 2 else endpoint.submit(pow, x, 2) for x in range(20)]
    assert endpoint.submit(fns.write_marker, str(allowed_marker)).result(TIMEOUT) == str(allowed_marker)

    for future in refused:
        with pytest.raises(fabric.FunctionNotAllowed) as caught:
            future.result(TIMEOUT)
        assert caught.value.function_id == function_id(fns.write_marker_too)
    for x, future in enumerate(mixed):
        if x % 2:
            assert future.result(TIMEOUT) == ("affine", x, x)
        else:
            with pytest.raises(fabric.FunctionNotAllowed):
                future.result(TIMEOUT)
    assert allowed_marker.read_text() == "ran"
    status = endpoint.status()
    assert (status.queued_tasks, status.outstanding_tasks, status.pending_futures) == (0, 0, 0)
    assert not refused_marker.exists()  # every task is answered and none is left: it can never run


def test_an_endpoint_without_a_list_runs_any_function(make_endpoint, tmp_path: Path) -> None:
    endpoint = make_endpoint()
    marker = tmp_path / "marker"
    assert endpoint.submit(fns.write_marker_too, str(marker)).result(TIMEOUT) == str(marker)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("bad", ["0123abcd", [""], [42]])
def test_a_bad_list_is_refused_before_anything_starts(bad: object) -> None:
    with pytest.raises(ConfigError, match="allowed_functions"):
        fabric.Endpoint(workers=1, allowed_functions=bad)  # type: ignore[arg-type]
