"""``fabric bench all``: every section into one record directory, then the charts.

The sections run in order (endpoint and service sweeps over every kind, peers, scale,
micro), each with its own command's defaults except what ``all`` passes on (``--workers``,
``--systems``, ``--repeat``, ``--quick``). The service section takes its ratios service /
endpoint from the endpoint section made just before it. The record is rewritten after each
section, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from benchmarks import cli
from benchmarks import record as records


def section_options(name: str, options: argparse.Namespace) -> argparse.Namespace:
    """The options ``name`` would get from its own command, with what ``all`` passes on."""
    workers = ",".join(map(str, options.workers))
    argv = {
        "endpoint": ["--kind", "all", "--workers", workers],
        "service": ["--kind", "all", "--workers", workers],
        "peers": ["--systems", ",".join(options.systems), "--workers", workers, "--repeat", str(options.repeat)],
        "scale": [],
        "micro": [],
    }[name]
    if options.quick:
        argv.append("--quick")
    parser = argparse.ArgumentParser(prog=f"all {name}")
    cli.COMMANDS[name][2](parser)
    return parser.parse_args(argv)


def run_section(name: str, section_args: argparse.Namespace, directory: Any,
                sections: dict[str, Any]) -> dict[str, Any]:
    """Run section ``name``; ``sections``: those already in the record."""
    if name in ("endpoint", "service"):
        from benchmarks import sweep  # noqa: PLC0415

        return sweep.run_section(sweep.PATHS[name], section_args, records.log, sections.get("endpoint"))
    if name == "peers":
        from benchmarks import peers  # noqa: PLC0415

        return peers.run_section(section_args, records.log)
    if name == "scale":
        from benchmarks import scale  # noqa: PLC0415

        return scale.run_section(section_args, records.log)
    from benchmarks.micro import runner  # noqa: PLC0415

    return runner.run_section(section_args, records.log, directory)


def execute(options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    failed = []
    for name in cli.SECTIONS:
        if name in options.skip:
            continue
        try:
            record["sections"][name] = run_section(name, section_options(name, options), directory,
                                                   record["sections"])
        except Exception:  # noqa: BLE001 - one broken section must not lose the others
            failed.append(name)
            record.setdefault("failed_sections", {})[name] = traceback.format_exc()[-2000:]
            records.log(f"{prog}: section {name} failed:\n{record['failed_sections'][name]}")
        records.write(directory, record)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    if not options.no_plots:
        from benchmarks import plot  # noqa: PLC0415

        missing = plot.matplotlib_missing()
        if missing:
            records.log(f"{prog}: no charts: {missing}")
        else:
            for path in plot.draw(directory, record):
                records.log(f"{prog}: chart {path}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.suite") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=cli.DESCRIPTIONS["all"])
    cli.add_all_arguments(parser)
    return execute(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
