"""Functions the Slurm tests run on workers (importable by name on the job's nodes)."""

from __future__ import annotations

import os
import time


def where(x: int, seconds: float = 0.0) -> tuple[int, str | None, str | None]:
    """``x``, the Slurm job this ran in, and its job step (set when started by ``srun``)."""
    if seconds:
        time.sleep(seconds)
    return x, os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
