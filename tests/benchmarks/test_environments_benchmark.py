"""``fabric bench environments`` run for real in quick mode: it measures every installed
container runtime and the shell function, checks each task, and writes its record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_environments_benchmark_writes_one_json_line_per_environment(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "environments", "--quick", "--output-dir",
                           str(tmp_path)], cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [row["environment"] for row in rows] == ["none", "bubblewrap", "podman", "python no-op",
                                                   "ShellFunction('true')"]
    for row in rows:
        assert row["tasks_per_second"] > 0 and row["median_us"] > 0
    assert all(row["container_start_s"] > 0 for row in rows if row["environment"] in ("bubblewrap", "podman"))
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["sections"]["environments"]["config"]["not_installed"] == []
    assert "| podman |" in (tmp_path / "report.md").read_text()
