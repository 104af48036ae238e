"""``python -m benchmarks BENCHMARK [options]``: run one benchmark by name."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

BENCHMARKS = {
    "endpoint": ("benchmarks.endpoint", "a local Endpoint: throughput, latency, start-up, peak RSS"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run a benchmark; it prints one JSON line. "
                    "Pass --help after the benchmark's name for its options.",
        epilog="benchmarks: " + "; ".join(f"{name}: {text}" for name, (_, text) in BENCHMARKS.items()),
    )
    parser.add_argument("benchmark", choices=list(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the benchmark's own options")
    options = parser.parse_args(argv)
    module = importlib.import_module(BENCHMARKS[options.benchmark][0])
    return int(module.main(options.arguments, prog=f"python -m benchmarks {options.benchmark}"))


if __name__ == "__main__":
    sys.exit(main())
