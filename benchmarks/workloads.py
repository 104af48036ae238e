"""The workloads every benchmark runs: a task function, its arguments, its result check.

One ``Kind`` per workload; the endpoint benchmark, the sweep and the peers all take their
tasks from ``KINDS``, so "the same workload" means the same function, the same arguments
and the same check, whatever system runs it. Task ``i`` gets arguments that depend on
``i`` (its index is in its payload), so a result delivered to the wrong task fails its
check. Importing this module is cheap: numpy and the large payloads are made on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable
from typing import Any

from benchmarks import tasks

NUMPY_SHAPE = (125, 100)
"""The ``numpy`` kind's array: 125 x 100 float64, 100,000 bytes."""


@functools.cache
def _tail(size: int) -> bytes:
    return random.Random(0).randbytes(size - 8)


def payload(index: int, size: int = tasks.PAYLOAD_BYTES) -> bytes:
    """Task ``index``'s payload of ``size`` bytes: its index in 8 bytes, then fixed pseudo-random bytes."""
    return index.to_bytes(8, "little") + _tail(size)


def check_payload(index: int, value: Any, size: int = tasks.PAYLOAD_BYTES) -> bool:
    """Whether ``value`` is exactly ``payload(index, size)``."""
    return (type(value) is bytes and len(value) == size
            and value.startswith(index.to_bytes(8, "little")) and value.endswith(_tail(size)))


@functools.cache
def _numpy_base() -> Any:
    import numpy  # noqa: PLC0415 - numpy is needed only by the numpy kind

    return numpy.arange(NUMPY_SHAPE[0] * NUMPY_SHAPE[1], dtype=numpy.float64).reshape(NUMPY_SHAPE)


def numpy_argument(index: int) -> Any:
    """Task ``index``'s array: the base array with its first element set to ``index``."""
    array = _numpy_base().copy()
    array[0, 0] = index
    return array


def check_numpy(index: int, value: Any) -> bool:
    """Whether ``value`` is ``numpy_argument(index) + 1``."""
    import numpy  # noqa: PLC0415

    if not isinstance(value, numpy.ndarray) or value.shape != NUMPY_SHAPE or value.dtype != numpy.float64:
        return False
    expected = _numpy_base() + 1
    return bool(value[0, 0] == index + 1 and numpy.array_equal(value.ravel()[1:], expected.ravel()[1:]))


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """One kind of benchmark task: its function, arguments and result check.

    ``default_tasks`` is the single endpoint run's default, ``sweep_tasks`` and
    ``sweep_latency_samples`` the endpoint sweep's, ``service_tasks`` and
    ``service_latency_samples`` the service path's (one run or a sweep: through HTTP and the
    store a cell moves roughly a tenth of the endpoint path's tasks, so a full service sweep
    takes a few minutes on 2 cores), ``peer_tasks`` and ``peer_latency_samples`` the
    side-by-side run's (the same for every system), ``quick_tasks`` the count of ``--quick`` runs.
    """

    name: str
    function: Callable[..., Any]
    default_tasks: int
    arguments: Callable[[int], tuple[Any, ...]]
    check: Callable[[int, Any], bool]
    description: str
    sweep_tasks: int = 0
    sweep_latency_samples: int = 1000
    quick_tasks: int = 20
    peer_tasks: int = 2_000
    peer_latency_samples: int = 1000
    service_tasks: int = 1_000
    service_latency_samples: int = 200


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("noop", tasks.noop, 100_000, lambda i: (), lambda i, value: value is None,
         "returns None at once", sweep_tasks=100_000, sweep_latency_samples=2000, quick_tasks=200,
         peer_tasks=10_000, service_tasks=20_000, service_latency_samples=1000),
    Kind("sleep10ms", tasks.sleep10ms, 1_000, lambda i: (i,), lambda i, value: value == i,
         "sleeps 10 ms, returns its argument", sweep_tasks=1_000, sweep_latency_samples=300, quick_tasks=20,
         peer_tasks=400, peer_latency_samples=100, service_tasks=500),
    Kind("payload100k", tasks.echo, 20_000, lambda i: (payload(i),), check_payload,
         "receives 100 kB of bytes and returns them", sweep_tasks=5_000, quick_tasks=40),
    Kind("oneway100k", tasks.size_of, 20_000, lambda i: (payload(i),),
         lambda i, value: value == (i, tasks.PAYLOAD_BYTES),
         "receives 100 kB of bytes, returns (index, length): a large argument, a small result",
         sweep_tasks=5_000, quick_tasks=40),
    Kind("payload10m", tasks.echo, 50, lambda i: (payload(i, tasks.LARGE_PAYLOAD_BYTES),),
         lambda i, value: check_payload(i, value, tasks.LARGE_PAYLOAD_BYTES),
         "receives 10 MB of bytes and returns them", sweep_tasks=50, sweep_latency_samples=20, quick_tasks=3,
         peer_tasks=20, peer_latency_samples=10, service_tasks=10, service_latency_samples=5),
    Kind("numpy", tasks.add_one, 20_000, lambda i: (numpy_argument(i),), check_numpy,
         "receives a 100 kB float64 array (125 x 100), returns the array + 1", sweep_tasks=5_000, quick_tasks=40),
)}
