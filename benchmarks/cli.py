"""The benchmark suite's command line, shared by ``python -m benchmarks`` and ``fabric bench``.

Only ``argparse`` and the workload table are imported here, so ``fabric --help`` stays fast;
each command's module is imported when the command runs. Every command (except ``plot``)
writes a record directory; ``plot`` draws charts from one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.workloads import KINDS

SYSTEMS = ("fabric", "processpool", "dask", "ray", "parsl")
"""Systems the side-by-side run knows: ours first, then the peers."""

PEER_KINDS = ("noop", "sleep10ms", "payload100k")
SWEEP_WORKERS = (1, 2, 4, 8)
SCALE_MANAGERS = (10, 100, 1000, 10000)
SECTIONS = ("endpoint", "service", "peers", "scale", "micro")

RESULTS_HELP = "benchmarks/results/<timestamp>/ next to the benchmarks package (git-ignored)"

ENDPOINT_DESCRIPTION = (
    "Measure a local Endpoint (interchange, managers, workers on this machine): throughput, round-trip "
    "latency (median, p99, p99.9), start-up time, peak RSS of every process role. Every result is checked; "
    "the exit status is 1 if any is wrong. One kind and one worker count: one measurement in this process, "
    "printed as ONE JSON line. Several kinds or worker counts (e.g. --kind all --workers 1,2,4,8), or "
    "--output-dir: a sweep, each cell in a fresh child process, one JSON line per cell, plus record.json "
    "and report.md in the output directory. Workers beyond this machine's CPUs are marked oversubscribed. "
    "The service path is `bench service`, with the same options.")

SERVICE_DESCRIPTION = (
    "Measure the service path: the SDK's Executor -> HTTP -> a real service process (SQLite store, "
    "forwarder) -> a real endpoint connected over CurveZMQ -> back, all started on this machine on free "
    "ports: throughput, round-trip latency (median, p99, p99.9), start-up time, peak RSS of every process role "
    "(client, service, interchange, manager, worker). Every result is checked; the exit status is 1 if any is "
    "wrong. One kind and one worker count: one measurement in this process, printed as ONE JSON line. Several "
    "kinds or worker counts (e.g. --kind all --workers 1,2,4,8), or --output-dir: a sweep, each cell in a fresh "
    "child process, one JSON line per cell, plus record.json and report.md in the output directory. Workers "
    "beyond this machine's CPUs are marked oversubscribed.")


# --- argument types ---------------------------------------------------------------------


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def int_list(minimum: int) -> Callable[[str], list[int]]:
    """``"1,2,4"`` -> ``[1, 2, 4]``, each at least ``minimum``."""
    single = at_least(minimum)

    def parse(text: str) -> list[int]:
        values = [single(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("expected at least one integer")
        return list(dict.fromkeys(values))
    return parse


def name_list(choices: Sequence[str], everything: str = "all") -> Callable[[str], list[str]]:
    """``"a,b"`` -> ``["a", "b"]``, each one of ``choices``; ``everything`` means all of them."""
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        if names == [everything]:
            return list(choices)
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {', '.join(map(repr, unknown)) or repr(text)} "
                f"(choose from {', '.join(choices)}, or {everything})")
        return list(dict.fromkeys(names))
    return parse


def _kinds_help() -> str:
    return "; ".join(f"{k.name}: {k.description}" for k in KINDS.values())


def _add_output(parser: argparse.ArgumentParser, quick: str) -> None:
    parser.add_argument("--output-dir", type=Path, default=None,
                        help=f"directory for record.json and report.md (default: {RESULTS_HELP})")
    parser.add_argument("--quick", action="store_true",
                        help=f"{quick}: checks that everything runs, not how fast (for tests)")


def _quick_tasks() -> str:
    return ", ".join(f"{k.name} {k.quick_tasks}" for k in KINDS.values())


# --- the commands -----------------------------------------------------------------------


def _add_path_arguments(parser: argparse.ArgumentParser, *, tasks: str, samples: str, log_level: str) -> None:
    """The options of the endpoint and service paths (``benchmarks.sweep``); the help names their defaults."""
    parser.add_argument("--kind", type=name_list(list(KINDS)), default=["noop"], metavar="KIND[,KIND...]",
                        help=f"the task(s) to run, comma-separated, or 'all' (default: noop). {_kinds_help()}")
    parser.add_argument("--tasks", type=at_least(1), default=None,
                        help=f"tasks in each throughput run (default: {tasks}; with --quick: {_quick_tasks()})")
    parser.add_argument("--workers", type=int_list(1), default=[2], metavar="N[,N...]",
                        help="workers per manager; a comma list sweeps them (default: 2)")
    parser.add_argument("--managers", type=at_least(1), default=1, help="local managers (default: 1)")
    parser.add_argument("--prefetch", type=at_least(0), default=None,
                        help="tasks each manager holds beyond one per worker (default: adaptive)")
    parser.add_argument("--latency-samples", type=at_least(0), default=None,
                        help=f"sequential round trips to time (default: {samples}; with --quick: 5)")
    parser.add_argument("--output", type=Path, default=None,
                        help="also append the JSON line(s) to this file")
    parser.add_argument("--record-samples", action="store_true",
                        help="put every round-trip time (ms) in the JSON line as latency_samples_ms "
                             "(a sweep always keeps them in record.json, for the plots)")
    parser.add_argument("--log-level", default=None, help=log_level)
    _add_output(parser, f"tiny task counts ({_quick_tasks()}) and 5 round trips")


def _per_kind(field: str) -> str:
    return ", ".join(f"{k.name} {getattr(k, field):,}" for k in KINDS.values())


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    _add_path_arguments(
        parser, tasks=f"for one measurement {_per_kind('default_tasks')}; in a sweep {_per_kind('sweep_tasks')}",
        samples=f"200 for one measurement; in a sweep {_per_kind('sweep_latency_samples')}",
        log_level="log level of the endpoint's processes (default: FABRIC_LOG_LEVEL or WARNING)")


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    _add_path_arguments(parser, tasks=_per_kind("service_tasks"), samples=_per_kind("service_latency_samples"),
                        log_level="log level of the service's and the endpoint's processes (default: WARNING)")


def add_peers_arguments(parser: argparse.ArgumentParser) -> None:
    counts = ", ".join(f"{k.name} {k.peer_tasks:,}" for k in KINDS.values())
    parser.add_argument("--systems", type=name_list(SYSTEMS), default=list(SYSTEMS), metavar="NAME[,NAME...]",
                        help=f"systems to run, comma-separated (default: all of {', '.join(SYSTEMS)}); a peer "
                             "that is not installed is skipped with the reason (pip install -e '.[peers]')")
    parser.add_argument("--kind", type=name_list(list(KINDS)), default=list(PEER_KINDS), metavar="KIND[,KIND...]",
                        help=f"workloads (default: {','.join(PEER_KINDS)}). {_kinds_help()}")
    parser.add_argument("--workers", type=int_list(1), default=list(SWEEP_WORKERS), metavar="N[,N...]",
                        help=f"worker counts to sweep (default: {','.join(map(str, SWEEP_WORKERS))})")
    parser.add_argument("--tasks", type=at_least(1), default=None,
                        help=f"tasks per throughput run, the same for every system (default: {counts})")
    parser.add_argument("--latency-samples", type=at_least(0), default=None,
                        help="sequential round trips per workload (default: "
                             + ", ".join(f"{k.name} {k.peer_latency_samples:,}" for k in KINDS.values()) + ")")
    parser.add_argument("--repeat", type=at_least(1), default=1,
                        help="rounds of the whole matrix, systems interleaved in each; tables show the median "
                             "and the spread, ratios are taken within each round (default: 1)")
    parser.add_argument("--cell-timeout", type=at_least(1), default=900,
                        help="seconds one system at one worker count may take before it is reported as "
                             "timed out (default: 900)")
    parser.add_argument("--cell", choices=SYSTEMS, default=None, help=argparse.SUPPRESS)
    _add_output(parser, f"tiny task counts ({_quick_tasks()}) and 5 round trips")


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--managers", type=int_list(1), default=list(SCALE_MANAGERS), metavar="N[,N...]",
                        help=f"simulated manager counts (default: {','.join(map(str, SCALE_MANAGERS))})")
    parser.add_argument("--workers-per-manager", type=at_least(1), default=10,
                        help="workers each simulated manager reports (default: 10, so 10,000 managers "
                             "are 100,000 workers)")
    parser.add_argument("--turns", type=at_least(1), default=200,
                        help="interchange loop turns simulated per measurement (default: 200)")
    parser.add_argument("--repeat", type=at_least(1), default=3,
                        help="repeats of each measurement; the table shows the median and the spread (default: 3)")
    _add_output(parser, "at most 1,000 managers, at most 20 turns, 1 repeat")


def add_micro_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", dest="select", default=None, metavar="EXPRESSION",
                        help="run only the micro benchmarks whose names match (pytest -k)")
    _add_output(parser, "pytest-benchmark limited to about 10 ms per benchmark, no warm-up, few rounds")


def add_all_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip", type=name_list(SECTIONS, everything="none"), default=[], metavar="SECTION[,...]",
                        help=f"sections to leave out ({', '.join(SECTIONS)})")
    parser.add_argument("--workers", type=int_list(1), default=list(SWEEP_WORKERS), metavar="N[,N...]",
                        help=f"worker counts for the endpoint and service sweeps and the peers "
                             f"(default: {','.join(map(str, SWEEP_WORKERS))})")
    parser.add_argument("--systems", type=name_list(SYSTEMS), default=list(SYSTEMS), metavar="NAME[,NAME...]",
                        help="systems for the side-by-side run (default: all)")
    parser.add_argument("--repeat", type=at_least(1), default=1,
                        help="rounds of the side-by-side run (default: 1)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG charts at the end")
    _add_output(parser, "every section in its quick mode")


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, nargs="?", default=None,
                        help="a record directory (default: the newest under benchmarks/results/)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where the PNG files go (default: the record directory)")
    parser.add_argument("--workers", type=at_least(1), default=2,
                        help="the worker count whose latency distributions are drawn (default: 2)")


ROUTING_MODES = ("single", "round-robin", "least-loaded", "fastest", "cheapest", "closest")


def add_routing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=at_least(1), default=10_000, help="tasks per mode (default: 10,000)")
    parser.add_argument("--task-ms", type=float, default=5.0, help="milliseconds each task sleeps (default: 5)")
    parser.add_argument("--delay-ms", type=float, default=10.0,
                        help="milliseconds added to each task on the 2-worker endpoint (default: 10)")
    parser.add_argument("--modes", type=name_list(ROUTING_MODES), default=list(ROUTING_MODES),
                        metavar="MODE[,MODE...]", help=f"modes to run (default: all of {', '.join(ROUTING_MODES)})")
    parser.add_argument("--cost-tasks", type=at_least(0), default=20_000,
                        help="no-op tasks per dispatch-cost run (default: 20,000; 0 skips it)")
    parser.add_argument("--repeat", type=at_least(1), default=3,
                        help="alternated direct/routed dispatch-cost runs (default: 3)")
    _add_output(parser, "300 tasks per mode, at most 2,000 dispatch-cost tasks, 1 repeat")


def add_flows_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chains", type=at_least(1), default=20,
                        help="three-step chains measured each way (default: 20)")
    parser.add_argument("--memo-samples", type=at_least(1), default=50, help="memoized calls timed (default: 50)")
    parser.add_argument("--shared-tasks", type=at_least(1), default=200,
                        help="tasks given the same 10 MB value (default: 200)")
    parser.add_argument("--workers", type=int_list(1), default=[2], help="workers per manager (default: 2)")
    parser.add_argument("--managers", type=at_least(1), default=1, help="local managers (default: 1)")
    parser.add_argument("--prefetch", type=at_least(0), default=None,
                        help="tasks each manager holds beyond one per worker (default: adaptive)")
    parser.add_argument("--log-level", default=None, help="the service's and endpoint's log level")


COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "endpoint": ("benchmarks.endpoint",
                 "the endpoint path: throughput, latency, start-up, peak RSS per process; kinds and worker counts swept",
                 add_endpoint_arguments),
    "service": ("benchmarks.service",
                "the service path: Executor -> HTTP -> service -> endpoint -> back; kinds and worker counts swept",
                add_service_arguments),
    "peers": ("benchmarks.peers",
              "side by side, same workload and machine: fabric, ProcessPoolExecutor, Dask, Ray, Parsl HTEX",
              add_peers_arguments),
    "flows": ("benchmarks.flows",
              "pipelines through the service: dependencies vs client-driven steps, memo hits, one 10 MB value "
              "for many tasks", add_flows_arguments),
    "scale": ("benchmarks.scale",
              "the interchange scheduler driven by 10 to 10,000 simulated managers: dispatch and heartbeat cost",
              add_scale_arguments),
    "micro": ("benchmarks.micro.runner",
              "pytest-benchmark micro benchmarks: serialization, protocol, scheduler, worker function cache",
              add_micro_arguments),
    "all": ("benchmarks.suite", "every section above into one record directory, then the charts",
            add_all_arguments),
    "routing": ("benchmarks.routing",
                "a bag of tasks over three endpoints per routing policy, round-robin and one endpoint; dispatch cost",
                add_routing_arguments),
    "plot": ("benchmarks.plot", "PNG charts from a record directory (needs matplotlib)", add_plot_arguments),
}

DESCRIPTIONS = {
    "endpoint": ENDPOINT_DESCRIPTION,
    "service": SERVICE_DESCRIPTION,
    "peers": "Run the same workloads on fabric and its peers, one system at a time, each in a fresh child process "
             "on this machine: Parsl HighThroughputExecutor (LocalProvider), Dask distributed LocalCluster "
             "(processes), Ray (local), concurrent.futures.ProcessPoolExecutor (no network: the lower bound). "
             "Writes record.json (each system's version and configuration, every figure) and report.md with "
             "ratios ours / peer taken within the same round.",
    "flows": "Pipelines through a real service and endpoint: a three-step chain released by the service (futures "
             "as arguments) against the same steps driven by the client, ms per step; memoization hit and miss "
             "latency; one 10 MB value (fabric.data.put) given to many tasks: tasks/s, uploads, fetches per node, "
             "the service's peak RSS. Prints one JSON line.",
    "scale": "Drive the real interchange Scheduler (handle/flush, no sockets) with an event-level simulation of "
             "many managers: registration, dispatch of a large queue, results freeing capacity, heartbeats and "
             "expiry. Reports dispatch rate and heartbeat cost per manager count and where the curve bends.",
    "micro": "Run benchmarks/micro with pytest-benchmark (--benchmark-only, JSON saved as micro.json) and write "
             "record.json and report.md. The same files run as: pytest benchmarks/micro --benchmark-only.",
    "all": "Run endpoint and service (all kinds, swept workers; the service table gains ratios service / "
           "endpoint), peers, scale and micro into one record directory, then draw the charts if matplotlib "
           "is installed.",
    "routing": "Measure routing: a real service and three real endpoints (1, 2 and 4 workers, the 2-worker one "
               "slowed by a per-task delay) run a bag of sleep tasks per mode: one endpoint only, client-side "
               "round-robin, and the service's policies least-loaded, fastest, cheapest and closest over an "
               "endpoint group. Reports makespan, tasks per endpoint and makespan / ideal (ideal = total work / "
               "total capacity); then the service's dispatch cost per no-op task routed through a one-member "
               "group vs sent to the endpoint directly. Writes record.json, report.md and routing.png.",
    "plot": "Draw PNG charts from a record directory: throughput vs workers per system, latency distribution "
            "per system, throughput and latency of the endpoint and service paths (side by side when the record "
            "has both), the scale curve (whichever the record has data for).",
}


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], **defaults: object) -> None:
    """Add every benchmark command to ``subparsers`` (of ``python -m benchmarks`` or ``fabric bench``);
    ``defaults`` are set on each command's namespace (``fabric`` sets its handler)."""
    for name, (_, summary, add_arguments) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=summary, description=DESCRIPTIONS[name])
        add_arguments(parser)
        parser.set_defaults(bench_command=name, **defaults)


def execute(options: argparse.Namespace, prog: str) -> int:
    """Run the command that ``options`` name; returns the exit status."""
    module = importlib.import_module(COMMANDS[options.bench_command][0])
    return int(module.execute(options, f"{prog} {options.bench_command}"))


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="The fabric's benchmark suite. Each command writes record.json and report.md "
                               "into an output directory; pass --help after a command for its options.")
    commands = parser.add_subparsers(dest="bench_command", metavar="COMMAND")
    add_commands(commands)
    parser.set_defaults(bench_command=None)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    parser = build_parser(prog)
    options = parser.parse_args(argv)
    if options.bench_command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return execute(options, prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
