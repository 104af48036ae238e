"""``fabric bench micro``: run ``benchmarks/micro`` under pytest-benchmark and record the results.

The run is ``python -m pytest benchmarks/micro --benchmark-only --benchmark-json DIR/micro.json``
(``--quick`` adds short timing limits); the record keeps every benchmark's statistics and,
where a benchmark times a batch, the rate per item (task or result).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import record as records

MICRO = Path(__file__).resolve().parent
TIMEOUT = 1800.0
QUICK_OPTIONS = ["--benchmark-min-rounds=1", "--benchmark-max-time=0.01", "--benchmark-warmup=off"]


def pytest_command(json_path: Path, quick: bool, select: str | None) -> list[str]:
    command = [sys.executable, "-m", "pytest", str(MICRO), "--benchmark-only", f"--benchmark-json={json_path}",
               "-q", "-p", "no:cacheprovider", "--benchmark-columns=mean,median,ops,rounds"]
    if quick:
        command += QUICK_OPTIONS
    if select:
        command += ["-k", select]
    return command


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures worth keeping from pytest-benchmark's JSON, one entry per benchmark."""
    found = []
    for bench in data.get("benchmarks", []):
        stats = bench["stats"]
        items = (bench.get("extra_info") or {}).get("items")
        entry = {
            "group": bench.get("group"), "name": bench["name"], "mean_us": stats["mean"] * 1e6,
            "median_us": stats["median"] * 1e6, "stddev_us": stats["stddev"] * 1e6, "min_us": stats["min"] * 1e6,
            "rounds": stats["rounds"], "ops": stats["ops"], "items": items,
        }
        if items:
            entry["items_per_second"] = items / stats["median"]
        found.append(entry)
    return found


def run_section(options: argparse.Namespace, log: records.Log, directory: Path) -> dict[str, Any]:
    json_path = directory / "micro.json"
    command = pytest_command(json_path, options.quick, options.select)
    log("micro: " + " ".join(command[1:]))
    environment = dict(os.environ, FABRIC_BENCH_QUICK="1" if options.quick else "0")
    completed = subprocess.run(command, cwd=MICRO.parent.parent, env=environment, capture_output=True, text=True,
                               timeout=TIMEOUT, check=False)
    section: dict[str, Any] = {
        "config": {"command": "python -m pytest benchmarks/micro --benchmark-only", "quick": options.quick,
                   "select": options.select, "json": json_path.name},
        "pytest_exit_status": completed.returncode,
        "benchmarks": [],
    }
    if json_path.exists():
        data = json.loads(json_path.read_text(encoding="utf-8"))
        section["benchmarks"] = summarize(data)
        section["machine_info"] = {k: data.get("machine_info", {}).get(k) for k in ("cpu", "python_version")}
    if completed.returncode != 0:
        section["error"] = completed.stdout.strip()[-1500:] + completed.stderr.strip()[-500:]
    return section


def execute(options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    section = record["sections"]["micro"] = run_section(options, records.log, directory)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    if "error" in section:
        records.log(f"{prog}: pytest failed:\n{section['error']}")
        return 1
    return 0


def _time(microseconds: float) -> str:
    if microseconds >= 1000:
        return f"{microseconds / 1000:,.2f} ms"
    if microseconds >= 1:
        return f"{microseconds:,.2f} µs"
    return f"{microseconds * 1000:,.0f} ns"


def report_lines(section: dict[str, Any]) -> list[str]:
    rows = [[
        entry["group"] or "", entry["name"].removeprefix("test_"), _time(entry["median_us"]), _time(entry["mean_us"]),
        f"{entry['rounds']:,}",
        f"{entry['items']:,} → {entry['items_per_second']:,.0f}/s" if entry.get("items") else f"{entry['ops']:,.0f}/s",
    ] for entry in section["benchmarks"]]
    lines = [
        "## Micro benchmarks",
        "",
        f"`{section['config']['command']}` (pytest-benchmark; raw JSON in {section['config']['json']}). "
        "Rate: calls per second, or items (tasks, results) per second for batch benchmarks, from the median.",
        "",
        *records.table(["group", "benchmark", "median", "mean", "rounds", "rate"], rows),
    ]
    if "error" in section:
        lines += ["", f"pytest exited with status {section['pytest_exit_status']}:", "", "```",
                  section["error"][-800:], "```"]
    return lines


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.micro.runner") -> int:
    from benchmarks import cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog=prog, description=cli.DESCRIPTIONS["micro"])
    cli.add_micro_arguments(parser)
    return execute(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
