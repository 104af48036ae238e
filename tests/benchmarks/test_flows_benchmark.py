"""``fabric bench flows``, small: a real service and endpoint; every figure is there and right."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import TIMEOUT


def test_bench_flows_reports_pipeline_memo_and_shared_data() -> None:
    completed = subprocess.run([sys.executable, "-m", "fabric.cli", "bench", "flows", "--chains", "2",
                                "--memo-samples", "2", "--shared-tasks", "4"],
                               capture_output=True, text=True, timeout=4 * TIMEOUT)
    assert completed.returncode == 0, completed.stderr[-2000:]
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert record["pipeline"]["chains"] == 2 and record["pipeline"]["wrong"] == 0
    assert record["pipeline"]["ms_per_step_service"] > 0 and record["pipeline"]["ms_per_step_client"] > 0
    assert record["memo"]["wrong"] == 0 and record["memo"]["hit_ms"] > 0
    shared = record["shared10m"]
    assert (shared["tasks"], shared["uploads"], shared["fetches"], shared["wrong"]) == (4, 1, 1, 0)
    assert shared["service_peak_rss_mb"] < 200
