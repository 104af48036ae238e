"""``fabric bench plot DIR``: PNG charts from a record directory (matplotlib, Agg backend).

Draws whichever the record has data for:

``peers-throughput.png``  tasks/s against workers, one line per system, one panel per workload
``peers-latency.png``     distribution (empirical CDF) of round trips per system at one worker count
``endpoint-throughput.png`` / ``endpoint-latency.png``  the same for the endpoint sweep, one line per kind / worker count
``service-throughput.png`` / ``service-latency.png``    the same for the service sweep
``paths-throughput.png``  both paths in one chart (when the record has both): tasks/s against workers per kind
``scale.png``             dispatch rate and heartbeat cost against the number of managers
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import record as records

MISSING = "matplotlib is not installed (pip install -e '.[peers]' or pip install matplotlib)"


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _workers(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def _label(system: str) -> str:
    from benchmarks.systems import SYSTEMS  # noqa: PLC0415

    return SYSTEMS[system].label if system in SYSTEMS else system


def _ecdf(axes: Any, samples: Sequence[float], label: str) -> None:
    values = sorted(samples)
    if not values:
        return
    fractions = [(i + 1) / len(values) for i in range(len(values))]
    axes.step(values, fractions, where="post", label=label)


def _log_milliseconds(axes: Any) -> None:
    """A log x axis with plain numbers (1, 10, 100 ms), no cluttered minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _legend_below(figure: Any, axes: Any) -> None:
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)


def _workers_axis(axes: Any, workers: Sequence[int], cpus: int) -> None:
    """A log2 axis of worker counts, labelled plainly, shaded beyond ``cpus`` (oversubscribed)."""
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    if workers:
        axes.set_xticks(workers, [str(w) for w in workers])
        if max(workers) > cpus:
            axes.axvspan(cpus * 1.2, max(workers) * 1.3, color="0.92", zorder=0)
    axes.set_xlabel(f"workers (shaded: more than the {cpus} CPUs)")


def _finish(plt: Any, figure: Any, path: Path, title: str, record: dict[str, Any], *,
            legend_below: Any = None) -> None:
    """Title the figure (with the machine and version line), save it as ``path`` and close it."""
    if legend_below is not None:
        _legend_below(figure, legend_below)
    figure.suptitle(f"{title}\n{_subtitle(record)}", fontsize=10)
    figure.tight_layout(rect=(0, 0.08, 1, 1) if legend_below is not None else None)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _subtitle(record: dict[str, Any]) -> str:
    machine = record["machine"]
    return (f"{machine['usable_cpus']} CPUs ({machine.get('cpu_model', '')}), Python {machine['python']}, "
            f"fabric {record['fabric_version']} {record.get('git_commit') or ''}, {record['started'][:10]}")


def peers_throughput(plt: Any, record: dict[str, Any], path: Path) -> None:
    section = record["sections"]["peers"]
    kinds = section["config"]["kinds"]
    cpus = section["config"]["usable_cpus"]
    figure, axes_list = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.2), squeeze=False)
    for axes, kind in zip(axes_list[0], kinds):
        for system in section["config"]["systems"]:
            points = []
            for workers in section["config"]["workers"]:
                values = [c["results"][kind]["tasks_per_second"] for c in section["cells"]
                          if c["system"] == system and c["workers"] == workers and kind in c.get("results", {})]
                if values:
                    points.append((workers, records.median(values), min(values), max(values)))
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
            axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=_label(system))
        _workers_axis(axes, section["config"]["workers"], cpus)
        axes.set_title(kind)
        axes.set_ylabel("tasks/s (log)")
        axes.grid(True, which="both", alpha=0.3)
    _finish(plt, figure, path, "Throughput against workers, same workload, same machine", record,
            legend_below=axes_list[0][0])


def peers_latency(plt: Any, record: dict[str, Any], path: Path, workers: int) -> bool:
    section = record["sections"]["peers"]
    available = section["config"]["workers"]
    if workers not in available:
        workers = min(available, key=lambda w: abs(w - workers))
    kinds = section["config"]["kinds"]
    figure, axes_list = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.2), squeeze=False)
    drawn = False
    for axes, kind in zip(axes_list[0], kinds):
        for system in section["config"]["systems"]:
            samples = [s for c in section["cells"] if c["system"] == system and c["workers"] == workers
                       for s in c.get("results", {}).get(kind, {}).get("latency_samples_ms", [])]
            if samples:
                _ecdf(axes, samples, _label(system))
                drawn = True
        _log_milliseconds(axes)
        axes.set_title(f"{kind}, {_workers(workers)}")
        axes.set_xlabel("round trip (ms, log)")
        axes.set_ylabel("fraction of round trips")
        axes.grid(True, which="both", alpha=0.3)
    _finish(plt, figure, path, "Latency distribution: sequential submit-then-result", record,
            legend_below=axes_list[0][0])
    return drawn


PATH_TITLES = {"endpoint": "fabric endpoint path",
               "service": "fabric service path (SDK -> HTTP -> service -> endpoint)"}


def _measured(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The cells of path section ``name`` that have figures (none when the record has no such section)."""
    section = record["sections"].get(name)
    return [c for c in section["cells"] if "tasks_per_second" in c] if section else []


def _throughput_lines(axes: Any, cells: Sequence[dict[str, Any]], label: Any, style: str = "-") -> None:
    """tasks/s against workers, one line per kind; ``label(kind)`` names each line."""
    for kind in dict.fromkeys(c["kind"] for c in cells):
        points = sorted((c["workers"], c["tasks_per_second"]) for c in cells if c["kind"] == kind)
        axes.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=label(kind))


def _throughput_axes(axes: Any, cells: Sequence[dict[str, Any]], cpus: int) -> None:
    _workers_axis(axes, sorted({c["workers"] for c in cells}), cpus)
    axes.set_ylabel("tasks/s (log)")
    axes.grid(True, which="both", alpha=0.3)


def path_charts(plt: Any, record: dict[str, Any], name: str, throughput_path: Path, latency_path: Path) -> None:
    """Throughput against workers (a line per kind) and the latency distribution per kind of one path."""
    cells = _measured(record, name)
    kinds = list(dict.fromkeys(c["kind"] for c in cells))
    figure, axes = plt.subplots(figsize=(6, 4.2))
    _throughput_lines(axes, cells, str)
    _throughput_axes(axes, cells, record["sections"][name]["config"]["usable_cpus"])
    axes.legend(fontsize=8)
    _finish(plt, figure, throughput_path, f"{PATH_TITLES[name]}: throughput against workers", record)
    figure, axes_list = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.8), squeeze=False)
    for axes, kind in zip(axes_list[0], kinds):
        for cell in cells:
            if cell["kind"] == kind and cell.get("latency_samples_ms"):
                _ecdf(axes, cell["latency_samples_ms"], _workers(cell["workers"]))
        _log_milliseconds(axes)
        axes.set_title(kind)
        axes.set_xlabel("round trip (ms, log)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    _finish(plt, figure, latency_path, f"{PATH_TITLES[name]}: latency distribution", record)


def paths_throughput(plt: Any, record: dict[str, Any], path: Path) -> None:
    """Both paths in one chart: tasks/s against workers, solid lines the endpoint path, dashed the service path."""
    endpoint, service = _measured(record, "endpoint"), _measured(record, "service")
    figure, axes = plt.subplots(figsize=(9, 4.6))
    _throughput_lines(axes, endpoint, lambda kind: f"{kind}, endpoint")
    colours = {line.get_label().split(",")[0]: line.get_color() for line in axes.get_lines()}
    before = len(axes.get_lines())
    _throughput_lines(axes, service, lambda kind: f"{kind}, service", "--")
    for line in axes.get_lines()[before:]:
        line.set_color(colours.get(line.get_label().split(",")[0], line.get_color()))
    _throughput_axes(axes, [*endpoint, *service], record["machine"]["usable_cpus"])
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, handlelength=3.5)
    _finish(plt, figure, path, "Throughput against workers: endpoint path (solid) and service path (dashed)",
            record)


def scale_chart(plt: Any, record: dict[str, Any], path: Path) -> None:
    section = record["sections"]["scale"]
    rows = section["rows"]
    managers = [row["managers"] for row in rows]
    busy = section["config"]["busy_turn"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("fill_tasks_per_second", "fill (every manager free)"),
                       ("steady_busy_tasks_per_second", f"steady, {busy} reports per turn"),
                       ("steady_busy_with_codec_tasks_per_second", f"steady, {busy} per turn + codec"),
                       ("steady_1_tasks_per_second", "steady, 1 report per turn")):
        left.plot(managers, [row[key] for row in rows], marker="o", label=label)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(f"managers ({section['config']['workers_per_manager']} workers each)")
    left.set_ylabel("tasks dispatched per CPU second (log)")
    left.set_title("dispatch rate")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.plot(managers, [row["tick_us"] for row in rows], marker="o", label="Tick, no one expired (µs)")
    right.plot(managers, [row["steady_1_flush_us_per_turn"] for row in rows], marker="o",
               label="flush after 1 report (µs)")
    right.plot(managers, [row["heartbeat_core_share"] * 1e6 for row in rows], marker="o",
               label="heartbeats: µs of CPU per second")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("managers")
    right.set_title("cost that grows with managers")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    _finish(plt, figure, path, "interchange Scheduler under simulated managers", record)


def draw(directory: Path, record: dict[str, Any], output: Path | None = None, workers: int = 2) -> list[Path]:
    """Draw every chart the record has data for; returns the files written."""
    plt = _pyplot()
    output = output or directory
    output.mkdir(parents=True, exist_ok=True)
    written = []
    sections = record["sections"]
    if "peers" in sections and any("results" in c for c in sections["peers"]["cells"]):
        peers_throughput(plt, record, output / "peers-throughput.png")
        written.append(output / "peers-throughput.png")
        if peers_latency(plt, record, output / "peers-latency.png", workers):
            written.append(output / "peers-latency.png")
    for name in PATH_TITLES:
        if _measured(record, name):
            path_charts(plt, record, name, output / f"{name}-throughput.png", output / f"{name}-latency.png")
            written += [output / f"{name}-throughput.png", output / f"{name}-latency.png"]
    if _measured(record, "endpoint") and _measured(record, "service"):
        paths_throughput(plt, record, output / "paths-throughput.png")
        written.append(output / "paths-throughput.png")
    if "scale" in sections and sections["scale"]["rows"]:
        scale_chart(plt, record, output / "scale.png")
        written.append(output / "scale.png")
    if "routing" in sections and sections["routing"]["rows"]:
        from benchmarks import routing  # noqa: PLC0415

        routing.chart(plt, record, output / "routing.png", _finish)
        written.append(output / "routing.png")
    return written


def matplotlib_missing() -> str | None:
    import importlib.util  # noqa: PLC0415

    return MISSING if importlib.util.find_spec("matplotlib") is None else None


def execute(options: argparse.Namespace, prog: str) -> int:
    missing = matplotlib_missing()
    if missing:
        print(f"{prog}: error: {missing}", file=sys.stderr)
        return 1
    directory = options.directory or records.latest()
    if directory is None:
        print(f"{prog}: error: no record directory given and none under {records.RESULTS}", file=sys.stderr)
        return 1
    try:
        record = records.load(directory)
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    written = draw(directory, record, options.output_dir, options.workers)
    if not written:
        print(f"{prog}: error: {directory} has nothing to draw", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.plot") -> int:
    from benchmarks import cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog=prog, description=cli.DESCRIPTIONS["plot"])
    cli.add_plot_arguments(parser)
    return execute(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
