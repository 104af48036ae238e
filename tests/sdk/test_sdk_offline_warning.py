"""Never a silent wait: an ``Executor`` whose endpoint is offline warns once, naming it and
how long, then runs the tasks when the endpoint connects (real service, real endpoint)."""

from __future__ import annotations

import warnings
from typing import Any

from tests.support import TIMEOUT, poll_until
from tests.support.sdk_functions import double

from fabric import Executor
from sdk.offline import EndpointOfflineWarning


def test_an_offline_endpoint_is_named_once_then_the_tasks_run(cluster: Any) -> None:
    _, client, registration = cluster.running(start_endpoint=False)
    endpoint_id = registration["endpoint_id"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Executor(endpoint_id, client=client, offline_warning_after=0.5) as executor:
            futures = [executor.submit(double, i) for i in range(3)]
            poll_until(lambda: [w for w in caught if w.category is EndpointOfflineWarning],
                       "the offline warning", timeout=3 * TIMEOUT)
            cluster.endpoint(registration)
            assert [f.result(TIMEOUT) for f in futures] == [0, 2, 4]
    offline = [str(w.message) for w in caught if w.category is EndpointOfflineWarning]
    assert len(offline) == 1, offline
    assert f"endpoint laptop ({endpoint_id}) has been offline for" in offline[0]
    assert "3 task(s) wait for it (never connected)" in offline[0]
    assert "fabric endpoint start laptop" in offline[0]


def test_no_warning_while_the_endpoint_is_online(cluster: Any) -> None:
    _, client, registration = cluster.running()
    poll_until(lambda: client.get_endpoint_status(registration["endpoint_id"])["status"] == "online", "online")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Executor(registration["endpoint_id"], client=client, offline_warning_after=0.0) as executor:
            assert list(executor.map(double, range(50))) == [2 * i for i in range(50)]
    assert not [w for w in caught if w.category is EndpointOfflineWarning]
