"""Accelerators for real: each worker sees only its own GPU, and a torch matmul runs on it.

Skipped cleanly where there is no GPU (no ``nvidia-smi``, no torch, or torch sees no
CUDA device). Where one exists it runs a real endpoint with one worker per GPU, found by
the manager's own discovery (``accelerators=None``), and prints what each worker saw.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

if shutil.which("nvidia-smi") is None:
    pytest.skip("no GPU here: nvidia-smi not found", allow_module_level=True)
torch = pytest.importorskip("torch", reason="no torch here")
if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device", allow_module_level=True)

import gpu_functions as fns  # noqa: E402

from fabric import Endpoint  # noqa: E402

TIMEOUT = 300.0


def gpu_ids() -> list[str]:
    """The GPUs the manager will find: CUDA_VISIBLE_DEVICES if set, else nvidia-smi's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        return [item.strip() for item in visible.split(",") if item.strip()]
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[0].removeprefix("GPU ").strip() for line in listed.splitlines() if line.startswith("GPU ")]


def test_each_worker_sees_only_its_gpu_and_runs_a_matmul_there() -> None:
    gpus = gpu_ids()
    assert gpus, "nvidia-smi lists no GPU"
    with Endpoint(workers=len(gpus), prefetch=0) as endpoint:
        endpoint.wait_for_workers(timeout=TIMEOUT)
        # A task with a walltime goes alone to an idle worker: every worker gets some.
        futures = [endpoint.submit_task(fns.what_the_worker_sees, (1.0,), walltime=TIMEOUT)
                   for _ in range(3 * len(gpus))]
        seen = [f.result(TIMEOUT) for f in futures]
    for row in seen:
        print(row)
    by_worker = {row["pid"]: row for row in seen}
    assert len(by_worker) == len(gpus)  # every worker ran tasks
    assert sorted(row["CUDA_VISIBLE_DEVICES"] for row in by_worker.values()) == sorted(gpus)
    assert all(row["device_count"] == 1 for row in seen)
    assert all(row["trace_ok"] for row in seen)
