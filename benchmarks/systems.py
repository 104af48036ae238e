"""The systems the side-by-side benchmark runs: fabric and its peers, behind one small interface.

Each ``System`` starts with ``workers`` worker processes on this machine, runs one call
(``call``: submit, wait for the result) or many (``run_all``: submit them all, then collect
every result), and says what it is (``version``, ``configuration``). Every system is driven
at the same level: its own submit call per task, returning its own future or reference;
results are collected with its bulk call where it has one (Dask ``gather``, Ray ``get`` of
a list). A peer that is not installed reports why in ``missing()``; nothing is ever faked.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.metadata
import importlib.util
import logging
import multiprocessing
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import psutil

from benchmarks.measure import module_role, usable_cpus

RESULT_TIMEOUT = 300.0
"""Seconds any one result (or one bulk collection) may take."""

INSTALL_HINT = "pip install -e '.[peers]'"

Deliver = Callable[[int, bool, Any], None]
"""``deliver(index, ok, value_or_exception)`` for each result of ``run_all``."""


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class System:
    """One execution system at a fixed worker count."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()
    distribution: ClassVar[str] = ""

    def __init__(self, workers: int, scratch: Path) -> None:
        self.workers = workers
        self.scratch = scratch

    @classmethod
    def missing(cls) -> str | None:
        """Why this system cannot run here (``None``: it can)."""
        for module in cls.modules:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed ({INSTALL_HINT})"
        return None

    def version(self) -> str:
        return _version(self.distribution)

    def configuration(self) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """One round trip: submit, then wait for the result (raises the task's exception)."""
        return self.submit(fn, args).result(RESULT_TIMEOUT)

    def run_all(self, fn: Callable[..., Any], arguments: Iterable[tuple[Any, ...]], deliver: Deliver) -> None:
        """Submit every task, then hand each result to ``deliver`` in submission order."""
        futures: list[Any] = [self.submit(fn, args) for args in arguments]
        for index, future in enumerate(futures):
            try:
                value = future.result(RESULT_TIMEOUT)
            except concurrent.futures.TimeoutError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed task is a wrong result
                deliver(index, False, exc)
            else:
                deliver(index, True, value)
            futures[index] = None  # results are dropped once checked

    def classify(self, process: psutil.Process) -> str:
        """The role of a descendant process, for the memory figures."""
        return "other"


class FabricSystem(System):
    name = "fabric"
    label = "fabric Endpoint"
    distribution = "fabric-faas"

    def configuration(self) -> dict[str, Any]:
        return {"api": "Endpoint.submit per task (a concurrent.futures.Future each)", "managers": 1,
                "workers": self.workers, "prefetch": "adaptive (default)",
                "transport": "ZeroMQ over TCP on 127.0.0.1 (client, interchange, manager), socketpairs to workers"}

    def start(self) -> None:
        from fabric import Endpoint  # noqa: PLC0415

        self.endpoint = Endpoint(workers=self.workers, managers=1)

    def stop(self) -> None:
        self.endpoint.shutdown(wait=False, cancel_futures=True)

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.endpoint.submit(fn, *args)

    def classify(self, process: psutil.Process) -> str:
        return module_role(process, ("interchange", "manager", "worker"))


class ProcessPoolSystem(System):
    name = "processpool"
    label = "ProcessPoolExecutor"
    CONTEXT = "forkserver"

    def version(self) -> str:
        return f"Python {platform.python_version()}"

    def configuration(self) -> dict[str, Any]:
        return {"api": "concurrent.futures.ProcessPoolExecutor.submit per task", "max_workers": self.workers,
                "mp_context": self.CONTEXT, "transport": "multiprocessing pipes, no network (the lower bound)"}

    def start(self) -> None:
        self.executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context(self.CONTEXT))

    def stop(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.executor.submit(fn, *args)


class DaskSystem(System):
    name = "dask"
    label = "Dask distributed"
    modules = ("distributed",)
    distribution = "distributed"

    def configuration(self) -> dict[str, Any]:
        return {"api": "Client.submit(pure=False) per task, Client.gather for many",
                "cluster": "LocalCluster(processes=True), nannies, TCP on 127.0.0.1, no dashboard",
                "n_workers": self.workers, "threads_per_worker": 1}

    def start(self) -> None:
        from distributed import Client, LocalCluster  # noqa: PLC0415

        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, scheduler_kwargs={"dashboard": False},
                                    silence_logs=logging.ERROR, local_directory=str(self.scratch))
        self.client = Client(self.cluster)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        self.cluster.close()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def run_all(self, fn: Callable[..., Any], arguments: Iterable[tuple[Any, ...]], deliver: Deliver) -> None:
        futures = [self.client.submit(fn, *args, pure=False) for args in arguments]
        try:
            values = self.client.gather(futures)
        except Exception:  # noqa: BLE001 - some task failed: judge them one by one
            _each(futures, deliver)
            return
        for index, value in enumerate(values):
            deliver(index, True, value)


def _each(futures: list[Any], deliver: Deliver) -> None:
    for index, future in enumerate(futures):
        try:
            value = future.result(RESULT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            deliver(index, False, exc)
        else:
            deliver(index, True, value)


class RaySystem(System):
    name = "ray"
    label = "Ray"
    modules = ("ray",)
    distribution = "ray"
    OBJECT_STORE_BYTES = 2 * 2**30

    def configuration(self) -> dict[str, Any]:
        return {"api": "ray.remote(num_cpus=1)(f).remote() per task, ray.get of one ref or of the list",
                "cluster": "ray.init() local head node, no dashboard", "num_cpus": self.workers,
                "object_store_memory": self.OBJECT_STORE_BYTES}

    def start(self) -> None:
        import ray  # noqa: PLC0415

        self.ray = ray
        self.remotes: dict[Callable[..., Any], Any] = {}
        ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 object_store_memory=self.OBJECT_STORE_BYTES)

    def stop(self) -> None:
        self.ray.shutdown()

    def _remote(self, fn: Callable[..., Any]) -> Any:
        remote = self.remotes.get(fn)
        if remote is None:
            remote = self.remotes[fn] = self.ray.remote(num_cpus=1)(fn)
        return remote

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self._remote(fn).remote(*args)

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.ray.get(self.submit(fn, args), timeout=RESULT_TIMEOUT)

    def run_all(self, fn: Callable[..., Any], arguments: Iterable[tuple[Any, ...]], deliver: Deliver) -> None:
        remote = self._remote(fn)
        refs = [remote.remote(*args) for args in arguments]
        try:
            values = self.ray.get(refs, timeout=RESULT_TIMEOUT)
        except self.ray.exceptions.GetTimeoutError:
            raise concurrent.futures.TimeoutError(f"no results within {RESULT_TIMEOUT} s") from None
        except Exception:  # noqa: BLE001 - some task failed: judge them one by one
            for index, ref in enumerate(refs):
                try:
                    value = self.ray.get(ref, timeout=RESULT_TIMEOUT)
                except Exception as exc:  # noqa: BLE001
                    deliver(index, False, exc)
                else:
                    deliver(index, True, value)
            return
        for index, value in enumerate(values):
            deliver(index, True, value)


class ParslSystem(System):
    name = "parsl"
    label = "Parsl HighThroughputExecutor"
    modules = ("parsl",)
    distribution = "parsl"

    def configuration(self) -> dict[str, Any]:
        return {"api": "HighThroughputExecutor.submit per task (the executor itself, not the DataFlowKernel's "
                       "python_app bookkeeping)",
                "provider": "LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1), one node",
                "max_workers_per_node": self.workers, "cores_per_worker": self._cores_per_worker(),
                "encrypted": False, "prefetch_capacity": 0, "address": "127.0.0.1", "strategy": "none"}

    def _cores_per_worker(self) -> float:
        """Small enough that HTEX starts every requested worker on this machine's cores."""
        return min(1.0, usable_cpus() / self.workers)

    def start(self) -> None:
        import parsl  # noqa: PLC0415
        from parsl.config import Config  # noqa: PLC0415
        from parsl.executors import HighThroughputExecutor  # noqa: PLC0415
        from parsl.providers import LocalProvider  # noqa: PLC0415

        self.parsl = parsl
        executor = HighThroughputExecutor(
            label="htex", address="127.0.0.1", max_workers_per_node=self.workers,
            cores_per_worker=self._cores_per_worker(), encrypted=False, prefetch_capacity=0,
            worker_logdir_root=str(self.scratch),
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
        self.dfk = parsl.load(Config(executors=[executor], run_dir=str(self.scratch / "runinfo"), strategy="none",
                                     usage_tracking=0, initialize_logging=False))
        self.executor = self.dfk.executors["htex"]

    def stop(self) -> None:
        self.dfk.cleanup()
        self.parsl.clear()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.executor.submit(fn, {}, *args)


SYSTEMS: dict[str, type[System]] = {cls.name: cls for cls in (
    FabricSystem, ProcessPoolSystem, DaskSystem, RaySystem, ParslSystem)}
