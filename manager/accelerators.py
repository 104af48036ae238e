"""Pinning worker processes to accelerators and CPU cores, decided once per node.

The manager discovers the node's accelerators once (``discover_accelerators``), plans
every worker's environment with the pure function ``plan_worker_env`` and hands each
worker its ``WorkerPlan``; a worker applies its CPU set with ``apply_cpu_affinity``.
Nothing here shells out per worker.

Accelerators
------------
``devices`` is a list of device ids (``"0"``, ``"1"``, or UUIDs such as ``"GPU-..."``)
or one comma-separated string ``"0,1,2,3"``. Whitespace around ids is ignored; an empty
entry (``"0,,1"``) or an id containing a comma is rejected. No devices means no
accelerator variables at all.

* ``len(devices) >= workers``: devices are split into contiguous groups of
  ``len(devices) // workers``; the remainder goes one device each to the first workers
  (8 devices for 3 workers: ``[0,1,2] [3,4,5] [6,7]``). Every device is used.
* ``len(devices) < workers``: round robin, worker ``i`` gets ``devices[i % len(devices)]``
  and workers share devices.

A worker with accelerators gets ``CUDA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES``,
``ZE_AFFINITY_MASK`` and ``FABRIC_ACCELERATOR`` all set to its comma-joined group.

CPU cores
---------
``cpus`` selects the mode; ``available_cpus`` are the cores the modes draw from
(typically ``sorted(os.sched_getaffinity(0))`` of the manager):

* ``None`` or ``"none"``: no pinning.
* ``"block"``: contiguous blocks of ``len(available_cpus) // workers`` cores; remainder
  cores stay unused. With fewer cores than workers, round robin one core each.
* ``"block-reverse"``: the same, counting from the end (worker 0 gets the last block;
  each worker's cores are listed in ascending order).
* ``"alternating"``: worker ``i`` gets ``available_cpus[i::workers]``; with fewer cores
  than workers, round robin one core each as for ``"block"``.
* explicit: ``"list:0,1:2,3"`` (``:`` separates workers; each part is a Linux cpulist
  such as ``"4-7,9"``) or a sequence of sequences of ints; exactly one entry per worker.

A pinned worker also gets ``OMP_NUM_THREADS`` set to the number of its cores.

Errors
------
Invalid input raises ``fabric.errors.ConfigError`` (a ``ValueError``): fewer than one
worker, an unknown mode, a malformed list, an explicit list of the wrong length, a mode
needing cores when ``available_cpus`` is empty, negative cpu ids or a cpu id repeated
within one worker's set.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fabric.errors import ConfigError

logger = logging.getLogger(__name__)

ACCELERATOR_ENV_VARS: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "ZE_AFFINITY_MASK",
)
"""Variables that restrict a process to some accelerators, in discovery order."""

FABRIC_ACCELERATOR_VAR = "FABRIC_ACCELERATOR"
OMP_THREADS_VAR = "OMP_NUM_THREADS"
CPU_MODES: tuple[str, ...] = ("none", "block", "block-reverse", "alternating")
EXPLICIT_PREFIX = "list:"
NVIDIA_SMI_TIMEOUT_S = 10.0

_NVIDIA_SMI_GPU_LINE = re.compile(r"^\s*GPU\s+(\d+)\s*:")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPlan:
    """How one worker process is pinned.

    ``env`` holds only the variables the plan decides; ``cpus`` empty means "do not pin".
    """

    index: int
    env: dict[str, str]
    cpus: tuple[int, ...]
    accelerators: tuple[str, ...]


# -- the plan ---------------------------------------------------------------------------


def plan_worker_env(
    workers: int,
    devices: Sequence[str] | str = (),
    cpus: str | Sequence[Sequence[int]] | None = None,
    *,
    available_cpus: Sequence[int] = (),
) -> list[WorkerPlan]:
    """Return one ``WorkerPlan`` per worker index ``0..workers-1``; reads no environment."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    device_groups = split_devices(normalize_devices(devices), workers)
    cpu_groups = plan_cpu_groups(workers, cpus, available_cpus)
    return [
        _worker_plan(index, device_groups[index], cpu_groups[index])
        for index in range(workers)
    ]


def _worker_plan(
    index: int, accelerators: tuple[str, ...], cpus: tuple[int, ...]
) -> WorkerPlan:
    """Build the environment of one worker from its devices and cores."""
    env: dict[str, str] = {}
    if accelerators:
        joined = ",".join(accelerators)
        for name in (*ACCELERATOR_ENV_VARS, FABRIC_ACCELERATOR_VAR):
            env[name] = joined
    if cpus:
        env[OMP_THREADS_VAR] = str(len(cpus))
    return WorkerPlan(index=index, env=env, cpus=cpus, accelerators=accelerators)


# -- accelerators -----------------------------------------------------------------------


def normalize_devices(devices: Sequence[str] | str) -> tuple[str, ...]:
    """Turn a device list or comma string into a tuple of stripped, non-empty ids."""
    if isinstance(devices, str):
        if not devices.strip():
            return ()
        items: Sequence[object] = devices.split(",")
    else:
        items = list(devices)
    result = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigError(f"device id at position {position} is not a string: {item!r}")
        device = item.strip()
        if not device:
            raise ConfigError(f"empty device id at position {position} in {devices!r}")
        if "," in device:
            raise ConfigError(f"device id {device!r} must not contain a comma")
        result.append(device)
    return tuple(result)


def split_devices(devices: Sequence[str], workers: int) -> list[tuple[str, ...]]:
    """Give each worker its devices: contiguous groups, or round robin if too few."""
    if not devices:
        return [() for _ in range(workers)]
    if len(devices) < workers:
        return [(devices[index % len(devices)],) for index in range(workers)]
    bounds = _contiguous_bounds(len(devices), workers)
    return [tuple(devices[start:stop]) for start, stop in bounds]


def _contiguous_bounds(count: int, workers: int) -> list[tuple[int, int]]:
    """Split ``count`` items into ``workers`` contiguous ranges; first ones get the rest."""
    size, remainder = divmod(count, workers)
    bounds = []
    start = 0
    for index in range(workers):
        stop = start + size + (1 if index < remainder else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


# -- cpu cores --------------------------------------------------------------------------


def plan_cpu_groups(
    workers: int,
    cpus: str | Sequence[Sequence[int]] | None,
    available_cpus: Sequence[int] = (),
) -> list[tuple[int, ...]]:
    """Return each worker's cores (an empty tuple means "do not pin") for a ``cpus`` mode."""
    if cpus is None:
        return [() for _ in range(workers)]
    if isinstance(cpus, str):
        return _cpu_groups_from_text(workers, cpus, available_cpus)
    if not isinstance(cpus, Sequence):
        raise ConfigError(f"cpus must be a mode string or a list of cpu lists, got {cpus!r}")
    groups = [_validated_group(group, index) for index, group in enumerate(cpus)]
    return _explicit_groups(workers, groups)


def _cpu_groups_from_text(
    workers: int, text: str, available_cpus: Sequence[int]
) -> list[tuple[int, ...]]:
    """Dispatch a textual mode: a named mode or ``list:...``."""
    mode = text.strip()
    if mode.lower().startswith(EXPLICIT_PREFIX):
        return _explicit_groups(workers, parse_explicit_cpus(mode[len(EXPLICIT_PREFIX):]))
    mode = mode.lower()
    if mode == "none":
        return [() for _ in range(workers)]
    if mode not in CPU_MODES:
        raise ConfigError(
            f"unknown cpu affinity mode {text!r}; expected one of "
            f"{', '.join(CPU_MODES)} or '{EXPLICIT_PREFIX}<cpus>:<cpus>...'"
        )
    cores = _validated_available(available_cpus, mode)
    if mode == "block-reverse":
        cores = cores[::-1]
    if len(cores) < workers:
        return [(cores[index % len(cores)],) for index in range(workers)]
    if mode == "alternating":
        return [tuple(cores[index::workers]) for index in range(workers)]
    size = len(cores) // workers
    return [tuple(sorted(cores[index * size:(index + 1) * size])) for index in range(workers)]


def _validated_available(available_cpus: Sequence[int], mode: str) -> list[int]:
    """Check the cores a mode draws from: present, non-negative, no repeats."""
    if not available_cpus:
        raise ConfigError(f"cpu affinity mode {mode!r} needs available_cpus, none were given")
    return list(_validated_group(available_cpus, None))


def _validated_group(group: object, index: int | None) -> tuple[int, ...]:
    """Check one set of cpu ids: a sequence of non-negative ints without repeats."""
    where = "available_cpus" if index is None else f"cpu set of worker {index}"
    if isinstance(group, (str, bytes)) or not isinstance(group, Sequence):
        raise ConfigError(f"{where} must be a sequence of ints, got {group!r}")
    cores: list[int] = []
    for core in group:
        if isinstance(core, bool) or not isinstance(core, int):
            raise ConfigError(f"{where} contains a non-integer cpu id {core!r}")
        if core < 0:
            raise ConfigError(f"{where} contains a negative cpu id {core}")
        cores.append(core)
    if len(set(cores)) != len(cores):
        repeated = sorted({core for core in cores if cores.count(core) > 1})
        raise ConfigError(f"{where} repeats cpu ids {repeated}")
    return tuple(cores)


def _explicit_groups(workers: int, groups: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Check an explicit per-worker list: one non-empty entry per worker."""
    if len(groups) != workers:
        raise ConfigError(
            f"explicit cpu list has {len(groups)} entries but there are {workers} workers"
        )
    for index, group in enumerate(groups):
        if not group:
            raise ConfigError(f"explicit cpu set of worker {index} is empty")
    return list(groups)


def parse_explicit_cpus(text: str) -> list[tuple[int, ...]]:
    """Parse the part after ``list:``: ``"0,1:2,3"`` -> ``[(0, 1), (2, 3)]``."""
    if not text.strip():
        raise ConfigError("explicit cpu list is empty; expected 'list:<cpus>:<cpus>...'")
    groups = []
    for index, part in enumerate(text.split(":")):
        groups.append(_validated_group(parse_cpu_list(part), index))
    return groups


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """Parse Linux cpulist syntax: ``"0-3,8,10-11"`` -> ``(0, 1, 2, 3, 8, 10, 11)``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"empty or non-text cpu list {text!r}")
    cores: list[int] = []
    for item in text.split(","):
        cores.extend(_parse_cpu_item(item.strip(), text))
    return tuple(cores)


def _parse_cpu_item(item: str, text: str) -> range:
    """Parse one ``N`` or ``N-M`` item of a cpulist."""
    low, dash, high = item.partition("-")
    if not low.isdigit() or (dash and not high.isdigit()):
        raise ConfigError(f"malformed cpu list item {item!r} in {text!r}")
    start = int(low)
    stop = int(high) if dash else start
    if stop < start:
        raise ConfigError(f"descending cpu range {item!r} in {text!r}")
    return range(start, stop + 1)


# -- node discovery and per-process application -----------------------------------------


def discover_accelerators(
    environ: Mapping[str, str],
    run_nvidia_smi: Callable[[], str | None] | None = None,
) -> list[str]:
    """Find this node's accelerators once: from the environment, else from ``nvidia-smi -L``."""
    for name in ACCELERATOR_ENV_VARS:
        value = environ.get(name, "")
        if value.strip():
            devices = [item.strip() for item in value.split(",") if item.strip()]
            logger.info("Accelerators from %s: %s", name, devices)
            return devices
    runner = nvidia_smi_list if run_nvidia_smi is None else run_nvidia_smi
    output = runner()
    devices = parse_nvidia_smi(output) if output else []
    if devices:
        logger.info("Accelerators from nvidia-smi: %s", devices)
    else:
        logger.info("No accelerators found (no visibility variable set, nvidia-smi listed none)")
    return devices


def parse_nvidia_smi(output: str) -> list[str]:
    """Return GPU indices from ``nvidia-smi -L`` output (``GPU 0: ... (UUID: ...)`` lines)."""
    devices = []
    for line in output.splitlines():
        match = _NVIDIA_SMI_GPU_LINE.match(line)
        if match:
            devices.append(match.group(1))
    return devices


def nvidia_smi_list(timeout: float = NVIDIA_SMI_TIMEOUT_S) -> str | None:
    """Run ``nvidia-smi -L``; return its stdout, or None if missing, failing or too slow."""
    try:
        completed = subprocess.run(
            ["nvidia-smi", "-L"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi not usable: %s", exc)
        return None
    if completed.returncode != 0:
        logger.debug("nvidia-smi -L exited %s: %s", completed.returncode, completed.stderr.strip())
        return None
    return completed.stdout


def apply_cpu_affinity(cpus: Sequence[int]) -> None:
    """Pin the calling process to ``cpus``; a no-op for an empty set or without OS support."""
    if not cpus:
        logger.debug("No cpu affinity requested; not pinning")
        return
    setter = getattr(os, "sched_setaffinity", None)
    if setter is None:
        logger.debug("os.sched_setaffinity unavailable on this platform; not pinning to %s", cpus)
        return
    try:
        setter(0, cpus)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot pin process to cpus {list(cpus)}: {exc}") from exc
    logger.debug("Pinned process to cpus %s", list(cpus))
