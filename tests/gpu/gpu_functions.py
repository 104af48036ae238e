"""What the GPU test runs on workers (imported by name there; torch is imported lazily)."""

from __future__ import annotations

import os
import time
from typing import Any


def what_the_worker_sees(seconds: float) -> dict[str, Any]:
    """Its pinning, what torch sees, and a matrix multiply on its device."""
    import torch

    time.sleep(seconds)  # hold the worker, so that every worker gets a task
    a = torch.randn(2048, 2048, device="cuda")
    product = a @ a.T
    torch.cuda.synchronize()
    return {
        "pid": os.getpid(), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device_count": torch.cuda.device_count(), "device_name": torch.cuda.get_device_name(0),
        "trace_ok": bool(torch.allclose(product.trace(), (a * a).sum(), rtol=1e-3)),
    }
