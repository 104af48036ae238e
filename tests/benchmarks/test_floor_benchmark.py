"""``fabric bench floor`` (``benchmarks.floor``) run for real, tiny: the bare chain and the endpoint
in one run, the JSON line, the record and the report; no process left behind. Never timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from benchmarks import record as records

REPOSITORY = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0
"""Seconds the command may take (a bound, never a measurement)."""

LATENCY_KEYS = {"samples", "median", "p99", "p999", "min", "mean", "max"}
SPREAD_KEYS = {"median", "min", "max"}


def test_a_quick_run_prints_one_json_line_with_both_sides_and_their_ratio(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "benchmarks", "floor", "--quick", "--output-dir", str(tmp_path)],
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stdout
    section = json.loads(lines[0])
    assert section["benchmark"] == "floor"
    assert section["config"] == {"samples": 5, "repeat": 1, "workers": 2, "quick": True}
    (round_,) = section["rounds"]
    assert set(round_["floor_ms"]) == set(round_["endpoint_ms"]) == LATENCY_KEYS
    assert round_["floor_ms"]["samples"] == round_["endpoint_ms"]["samples"] == 5
    assert round_["ratio_median"] == round(round_["endpoint_ms"]["median"] / round_["floor_ms"]["median"], 3)
    for key in ("ratio_median", "ratio_p99", "floor_median", "floor_p99", "endpoint_median", "endpoint_p99"):
        assert set(section[key]) == SPREAD_KEYS
    assert records.load(tmp_path)["sections"]["floor"] == section
    report = (tmp_path / "report.md").read_text()
    assert "## Round trip against the bare-chain floor" in report and "endpoint / chain median:" in report


CHAIN_CHECK = """
import psutil
from benchmarks import floor

def is_resource_tracker(process):
    try:
        return any("multiprocessing.resource_tracker" in word for word in process.cmdline())
    except psutil.NoSuchProcess:
        return False

before = {p.pid for p in psutil.Process().children(recursive=True)}
chain = floor.Chain()
try:
    assert len(psutil.Process().children(recursive=True)) >= len(before) + 3  # broker, manager, worker
    assert all(chain.round_trip() > 0 for _ in range(20))  # each reply checked against its request
finally:
    chain.close()
left = [p for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not is_resource_tracker(p)]  # multiprocessing's own, one per process
assert psutil.wait_procs(left, timeout=%r)[1] == []
print("chain ok")
"""


def test_the_chain_echoes_in_order_and_leaves_no_process_behind() -> None:
    # in a process of its own: multiprocessing's resource tracker lives as long as the process
    # that started the chain, and the tests after this one must find no process of ours
    checked = subprocess.run([sys.executable, "-c", CHAIN_CHECK % TIMEOUT], capture_output=True, text=True,
                             timeout=TIMEOUT * 2)
    assert checked.returncode == 0 and checked.stdout.strip() == "chain ok", checked.stderr
