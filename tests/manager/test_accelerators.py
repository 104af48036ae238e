"""Unit tests for manager.accelerators: pure planning, discovery with fakes, affinity."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import pytest

from fabric.errors import ConfigError
from manager.accelerators import (
    ACCELERATOR_ENV_VARS,
    WorkerPlan,
    apply_cpu_affinity,
    discover_accelerators,
    nvidia_smi_list,
    parse_cpu_list,
    plan_worker_env,
)

ACCEL_VARS = (*ACCELERATOR_ENV_VARS, "FABRIC_ACCELERATOR")

NVIDIA_SMI_OUTPUT = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f3c9a52-1b2c-4d5e-8f90-a1b2c3d4e5f6)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809)
  MIG 1g.10gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-2b3c4d5e-6f70-8192-a3b4-c5d6e7f8091a)
GPU 3: NVIDIA H100 80GB HBM3 (UUID: GPU-3c4d5e6f-7081-92a3-b4c5-d6e7f8091a2b)
"""


def accelerator_env(plan: WorkerPlan) -> dict[str, str]:
    """The accelerator variables of one plan."""
    return {name: value for name, value in plan.env.items() if name in ACCEL_VARS}


# -- accelerators -----------------------------------------------------------------------


@pytest.mark.parametrize("n_devices", [1, 2, 4, 8])
@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_device_matrix(n_devices: int, workers: int) -> None:
    devices = [str(i) for i in range(n_devices)]
    plans = plan_worker_env(workers, devices)

    assert [plan.index for plan in plans] == list(range(workers))
    for plan in plans:
        joined = ",".join(plan.accelerators)
        assert plan.accelerators
        assert accelerator_env(plan) == {name: joined for name in ACCEL_VARS}
        assert plan.cpus == ()
        assert "OMP_NUM_THREADS" not in plan.env
    used = [device for plan in plans for device in plan.accelerators]
    if n_devices >= workers:
        assert used == devices  # contiguous, every device exactly once, in order
        sizes = [len(plan.accelerators) for plan in plans]
        assert max(sizes) - min(sizes) <= 1
    else:
        assert [plan.accelerators for plan in plans] == [
            (devices[i % n_devices],) for i in range(workers)
        ]


@pytest.mark.parametrize(
    ("n_devices", "workers", "expected"),
    [
        (8, 3, ["0,1,2", "3,4,5", "6,7"]),
        (5, 2, ["0,1,2", "3,4"]),
        (7, 4, ["0,1", "2,3", "4,5", "6"]),
        (3, 2, ["0,1", "2"]),
        (2, 3, ["0", "1", "0"]),
        (3, 8, ["0", "1", "2", "0", "1", "2", "0", "1"]),
    ],
)
def test_uneven_device_splits(n_devices: int, workers: int, expected: list[str]) -> None:
    plans = plan_worker_env(workers, [str(i) for i in range(n_devices)])
    assert [plan.env["CUDA_VISIBLE_DEVICES"] for plan in plans] == expected
    assert [plan.env["ZE_AFFINITY_MASK"] for plan in plans] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1,2,3", ["0,1", "2,3"]),
        (" 0 , 1,2 ,3 ", ["0,1", "2,3"]),
        ("5", ["5", "5"]),
        ("GPU-aaa,GPU-bbb", ["GPU-aaa", "GPU-bbb"]),
    ],
)
def test_device_comma_string(text: str, expected: list[str]) -> None:
    plans = plan_worker_env(2, text)
    assert [plan.env["ROCR_VISIBLE_DEVICES"] for plan in plans] == expected
    assert [",".join(plan.accelerators) for plan in plans] == expected


def test_uuid_devices_are_kept_verbatim() -> None:
    uuids = ["GPU-0f3c9a52-1b2c", "GPU-1a2b3c4d-5e6f"]
    plans = plan_worker_env(1, uuids)
    assert plans[0].accelerators == tuple(uuids)
    assert plans[0].env["FABRIC_ACCELERATOR"] == ",".join(uuids)


@pytest.mark.parametrize("devices", [(), [], "", "   "])
@pytest.mark.parametrize("workers", [1, 3])
def test_no_devices_no_accelerator_variables(devices: Sequence[str] | str, workers: int) -> None:
    plans = plan_worker_env(workers, devices)
    assert len(plans) == workers
    for plan in plans:
        assert plan.env == {}
        assert plan.accelerators == ()
        assert plan.cpus == ()


def test_default_plan_is_empty() -> None:
    assert plan_worker_env(2) == [
        WorkerPlan(index=0, env={}, cpus=(), accelerators=()),
        WorkerPlan(index=1, env={}, cpus=(), accelerators=()),
    ]


def test_worker_plan_is_frozen() -> None:
    plan = plan_worker_env(1, "0")[0]
    with pytest.raises(AttributeError):
        plan.index = 3  # type: ignore[misc]


# -- cpu affinity -----------------------------------------------------------------------

EIGHT = list(range(8))


@pytest.mark.parametrize(
    ("mode", "workers", "available", "expected"),
    [
        ("block", 2, EIGHT, [(0, 1, 2, 3), (4, 5, 6, 7)]),
        ("block", 3, EIGHT, [(0, 1), (2, 3), (4, 5)]),
        ("block", 1, EIGHT, [tuple(EIGHT)]),
        ("block", 4, [10, 11, 12, 13], [(10,), (11,), (12,), (13,)]),
        ("BLOCK", 2, [0, 1], [(0,), (1,)]),
        ("block-reverse", 2, EIGHT, [(4, 5, 6, 7), (0, 1, 2, 3)]),
        ("block-reverse", 3, EIGHT, [(6, 7), (4, 5), (2, 3)]),
        ("alternating", 2, EIGHT, [(0, 2, 4, 6), (1, 3, 5, 7)]),
        ("alternating", 3, EIGHT, [(0, 3, 6), (1, 4, 7), (2, 5)]),
        ("list:0,1:2,3", 2, (), [(0, 1), (2, 3)]),
        ("list:0-3,8:4-7", 2, (), [(0, 1, 2, 3, 8), (4, 5, 6, 7)]),
        ("list:5", 1, (), [(5,)]),
        ("list:0:0", 2, (), [(0,), (0,)]),
        ([[0, 1], [2, 3, 4]], 2, (), [(0, 1), (2, 3, 4)]),
        (((7,), (6,), (5,)), 3, (), [(7,), (6,), (5,)]),
    ],
)
def test_cpu_modes(
    mode: str | Sequence[Sequence[int]],
    workers: int,
    available: Sequence[int],
    expected: list[tuple[int, ...]],
) -> None:
    plans = plan_worker_env(workers, cpus=mode, available_cpus=available)
    assert [plan.cpus for plan in plans] == expected
    for plan in plans:
        assert plan.env == {"OMP_NUM_THREADS": str(len(plan.cpus))}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("block", [(0,), (1,), (2,), (0,), (1,)]),
        ("block-reverse", [(2,), (1,), (0,), (2,), (1,)]),
        ("alternating", [(0,), (1,), (2,), (0,), (1,)]),
    ],
)
def test_fewer_cores_than_workers(mode: str, expected: list[tuple[int, ...]]) -> None:
    plans = plan_worker_env(5, cpus=mode, available_cpus=[0, 1, 2])
    assert [plan.cpus for plan in plans] == expected
    assert all(plan.env == {"OMP_NUM_THREADS": "1"} for plan in plans)


@pytest.mark.parametrize("mode", [None, "none", " None "])
def test_no_pinning(mode: str | None) -> None:
    plans = plan_worker_env(3, "0,1,2", cpus=mode, available_cpus=EIGHT)
    for plan in plans:
        assert plan.cpus == ()
        assert "OMP_NUM_THREADS" not in plan.env


def test_devices_and_cpus_combined() -> None:
    plans = plan_worker_env(2, "0,1,2,3", cpus="block", available_cpus=EIGHT)
    assert plans[1] == WorkerPlan(
        index=1,
        env={
            "CUDA_VISIBLE_DEVICES": "2,3",
            "ROCR_VISIBLE_DEVICES": "2,3",
            "ZE_AFFINITY_MASK": "2,3",
            "FABRIC_ACCELERATOR": "2,3",
            "OMP_NUM_THREADS": "4",
        },
        cpus=(4, 5, 6, 7),
        accelerators=("2", "3"),
    )


def test_plan_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    monkeypatch.setenv("OMP_NUM_THREADS", "99")
    plans = plan_worker_env(2)
    assert all(plan.env == {} for plan in plans)


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": -2}, "workers"),
        ({"workers": True}, "workers"),
        ({"workers": 2, "devices": "0,,1"}, "empty device id"),
        ({"workers": 2, "devices": "0,1,"}, "empty device id"),
        ({"workers": 2, "devices": ["0", " "]}, "empty device id"),
        ({"workers": 2, "devices": ["0,1", "2"]}, "comma"),
        ({"workers": 2, "devices": [0, 1]}, "not a string"),
        ({"workers": 2, "cpus": "spread", "available_cpus": EIGHT}, "unknown cpu affinity mode"),
        ({"workers": 2, "cpus": "", "available_cpus": EIGHT}, "unknown cpu affinity mode"),
        ({"workers": 2, "cpus": "block"}, "needs available_cpus"),
        ({"workers": 2, "cpus": "block-reverse"}, "needs available_cpus"),
        ({"workers": 2, "cpus": "alternating"}, "needs available_cpus"),
        ({"workers": 2, "cpus": "block", "available_cpus": [0, -1]}, "negative"),
        ({"workers": 2, "cpus": "block", "available_cpus": [0, 1, 1]}, "repeats"),
        ({"workers": 2, "cpus": "list:0,1"}, "1 entries but there are 2 workers"),
        ({"workers": 1, "cpus": "list:0:1"}, "2 entries but there are 1 workers"),
        ({"workers": 2, "cpus": "list:"}, "explicit cpu list is empty"),
        ({"workers": 2, "cpus": "list:0,1:"}, "empty"),
        ({"workers": 2, "cpus": "list:0,x:2"}, "malformed"),
        ({"workers": 2, "cpus": "list:0-:2"}, "malformed"),
        ({"workers": 2, "cpus": "list:3-1:2"}, "descending"),
        ({"workers": 2, "cpus": "list:0,0:1"}, "repeats"),
        ({"workers": 2, "cpus": "list:0-2,1:3"}, "repeats"),
        ({"workers": 2, "cpus": [[0], [1], [2]]}, "3 entries but there are 2 workers"),
        ({"workers": 2, "cpus": [[0], []]}, "empty"),
        ({"workers": 2, "cpus": [[0], [-1]]}, "negative"),
        ({"workers": 2, "cpus": [[0, 0], [1]]}, "repeats"),
        ({"workers": 2, "cpus": [[0], ["1"]]}, "non-integer"),
        ({"workers": 2, "cpus": [[0], "1"]}, "sequence of ints"),
        ({"workers": 2, "cpus": [[0], 1]}, "sequence of ints"),
        ({"workers": 2, "cpus": "block", "available_cpus": [0, 1.0]}, "non-integer"),
        ({"workers": 2, "cpus": 4}, "mode string or a list"),
    ],
)
def test_plan_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        plan_worker_env(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigError)


# -- parse_cpu_list ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", (0,)),
        ("0-3", (0, 1, 2, 3)),
        ("0-3,8,10-11", (0, 1, 2, 3, 8, 10, 11)),
        (" 4 , 6-7 ", (4, 6, 7)),
        ("5-5", (5,)),
        ("127", (127,)),
    ],
)
def test_parse_cpu_list(text: str, expected: tuple[int, ...]) -> None:
    assert parse_cpu_list(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "a", "1,", ",1", "1-", "-1", "1-2-3", "3-1", "1.5", "0x3", "1;2", "1 2"]
)
def test_parse_cpu_list_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_list(text)


# -- discovery --------------------------------------------------------------------------


def fail_if_called() -> str | None:
    raise AssertionError("nvidia-smi must not run when a visibility variable is set")


@pytest.mark.parametrize("name", ACCELERATOR_ENV_VARS)
def test_discover_from_each_env_var(name: str) -> None:
    devices = discover_accelerators({name: "2, 3,GPU-abc"}, fail_if_called)
    assert devices == ["2", "3", "GPU-abc"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"CUDA_VISIBLE_DEVICES": "0", "ROCR_VISIBLE_DEVICES": "1", "ZE_AFFINITY_MASK": "2"},
            ["0"],
        ),
        ({"ROCR_VISIBLE_DEVICES": "1", "ZE_AFFINITY_MASK": "2"}, ["1"]),
        ({"CUDA_VISIBLE_DEVICES": "", "ZE_AFFINITY_MASK": "2"}, ["2"]),
        ({"CUDA_VISIBLE_DEVICES": "  ", "ROCR_VISIBLE_DEVICES": "4,5"}, ["4", "5"]),
    ],
)
def test_discover_env_var_precedence(environ: dict[str, str], expected: list[str]) -> None:
    assert discover_accelerators(environ, fail_if_called) == expected


def test_discover_from_nvidia_smi(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def fake() -> str:
        calls.append(1)
        return NVIDIA_SMI_OUTPUT

    with caplog.at_level(logging.INFO, logger="manager.accelerators"):
        devices = discover_accelerators({"PATH": "/usr/bin"}, fake)
    assert devices == ["0", "1", "2", "3"]
    assert calls == [1]
    assert "nvidia-smi" in caplog.text


def test_discover_env_var_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="manager.accelerators"):
        discover_accelerators({"ZE_AFFINITY_MASK": "0"}, fail_if_called)
    assert "ZE_AFFINITY_MASK" in caplog.text


@pytest.mark.parametrize(
    "output",
    [None, "", "No devices were found\n", "NVIDIA-SMI has failed because it couldn't communicate"],
)
def test_discover_nothing(output: str | None) -> None:
    assert discover_accelerators({}, lambda: output) == []


def test_discover_lambda_output() -> None:
    output = "GPU 0: Tesla V100 (UUID: GPU-a)\nGPU 1: Tesla V100 (UUID: GPU-b)\n"
    assert discover_accelerators({}, lambda: output) == ["0", "1"]


def test_discovered_devices_feed_the_plan() -> None:
    devices = discover_accelerators({}, lambda: NVIDIA_SMI_OUTPUT)
    plans = plan_worker_env(2, devices)
    assert [plan.env["CUDA_VISIBLE_DEVICES"] for plan in plans] == ["0,1", "2,3"]


def test_real_nvidia_smi_list() -> None:
    output = nvidia_smi_list()
    assert output is None or isinstance(output, str)


# -- apply_cpu_affinity -----------------------------------------------------------------

has_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity"), reason="no sched_setaffinity on this platform"
)


@pytest.fixture
def restore_affinity() -> Iterator[set[int]]:
    """Yield this process's cpu set and put it back afterwards."""
    original = os.sched_getaffinity(0)
    try:
        yield set(original)
    finally:
        os.sched_setaffinity(0, original)


@has_affinity
def test_apply_cpu_affinity_own_set(restore_affinity: set[int]) -> None:
    apply_cpu_affinity(sorted(restore_affinity))
    assert os.sched_getaffinity(0) == restore_affinity


@has_affinity
def test_apply_cpu_affinity_single_core(restore_affinity: set[int]) -> None:
    core = min(restore_affinity)
    apply_cpu_affinity([core])
    assert os.sched_getaffinity(0) == {core}


@has_affinity
def test_apply_cpu_affinity_empty_is_noop(restore_affinity: set[int]) -> None:
    apply_cpu_affinity([])
    assert os.sched_getaffinity(0) == restore_affinity


@has_affinity
def test_apply_cpu_affinity_invalid_core(restore_affinity: set[int]) -> None:
    with pytest.raises(ConfigError, match="cannot pin"):
        apply_cpu_affinity([1_000_000])
    assert os.sched_getaffinity(0) == restore_affinity


def test_apply_cpu_affinity_without_platform_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    apply_cpu_affinity([0])  # must not raise
