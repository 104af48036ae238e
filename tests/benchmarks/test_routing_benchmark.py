"""``fabric bench routing --quick``: a real service and three real endpoints, every mode's
results checked by the command itself; here, what its record and report say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import record as records

TIMEOUT = 600


def test_the_routing_benchmark_writes_a_record_a_report_and_a_chart(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "routing", "--quick", "--modes",
                                "single,round-robin,least-loaded", "--cost-tasks", "300", "--output-dir", str(tmp_path)],
                               capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert completed.returncode == 0, completed.stderr
    section = records.load(tmp_path)["sections"]["routing"]
    rows = {row["mode"]: row for row in section["rows"]}
    assert list(rows) == ["single", "round-robin", "least-loaded"]
    assert rows["single"]["tasks_per_endpoint"] == {"w1": 0, "w2": 0, "w4": 300}
    assert rows["round-robin"]["tasks_per_endpoint"] == {"w1": 100, "w2": 100, "w4": 100}
    assert sum(rows["least-loaded"]["tasks_per_endpoint"].values()) == 300
    assert all(row["makespan_over_ideal"] > 0 for row in rows.values())
    cost = section["dispatch_cost"]
    assert len(cost["direct_tasks_per_second"]) == len(cost["routed_tasks_per_second"]) == 1
    assert cost["decision"]["plan_us_per_task"] > 0 and "decision_share" in cost
    report = (tmp_path / "report.md").read_text()
    assert "## Routing: a bag of tasks over three endpoints" in report and "| least-loaded |" in report
    assert "Routing's extra work" in report
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "routing.png").stat().st_size > 0
