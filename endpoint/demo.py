"""``fabric endpoint run-local``: the demo on a local endpoint, no service.

It starts a local endpoint (``sdk.endpoint.Endpoint``: an interchange, its managers and
their workers as child processes), estimates pi by Monte Carlo in ``--tasks`` chunks
(``pi_chunk``), prints the estimate and a throughput line, and shuts the endpoint down.
"""

from __future__ import annotations

import argparse
import math
import time

DEFAULT_TASKS = 5000
DEFAULT_SAMPLES = 1000


def pi_chunk(seed: int, samples: int) -> int:
    """How many of ``samples`` random points in the unit square fall inside the quarter circle.

    Runs on a worker; seeded, so the demo's estimate is the same on every run.
    """
    import random

    generator = random.Random(seed)
    draw = generator.random
    hits = 0
    for _ in range(samples):
        x = draw()
        y = draw()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_command(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run-local`` to ``fabric endpoint``'s actions."""
    run_local = actions.add_parser(
        "run-local", help="start a local endpoint and run a demo workload on it",
        description="Start a local endpoint (an interchange, its managers and their workers as child "
                    "processes on this machine), estimate pi by Monte Carlo in TASKS tasks, print the "
                    "estimate and the throughput in tasks/s, then shut the endpoint down.")
    run_local.add_argument("--workers", type=positive_int, default=None,
                           help="workers per manager (default: this machine's CPU cores)")
    run_local.add_argument("--managers", type=positive_int, default=1, help="local managers (default: 1)")
    run_local.add_argument("--tasks", type=positive_int, default=DEFAULT_TASKS,
                           help=f"tasks to run (default: {DEFAULT_TASKS})")
    run_local.add_argument("--samples-per-task", type=positive_int, default=DEFAULT_SAMPLES,
                           help=f"random points each task draws (default: {DEFAULT_SAMPLES})")
    run_local.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                           type=str.upper, help="log level of this process and the endpoint's processes "
                                                "(default: FABRIC_LOG_LEVEL or WARNING)")
    run_local.set_defaults(handler=run_local_demo, parser=run_local)


def run_local_demo(options: argparse.Namespace) -> int:
    """``fabric endpoint run-local``: the demo workload on a local endpoint."""
    from fabric.process import configure_logging
    from sdk.endpoint import Endpoint

    if options.log_level:
        configure_logging(options.log_level)
    started = time.perf_counter()
    with Endpoint(workers=options.workers, managers=options.managers, log_level=options.log_level) as endpoint:
        status = endpoint.wait_for_workers()
        print(f"endpoint {endpoint.endpoint_id}: {len(status.managers)} manager(s), {status.workers} workers, "
              f"ready in {time.perf_counter() - started:.2f} s")
        samples = options.samples_per_task
        submitted = time.perf_counter()
        futures = [endpoint.submit(pi_chunk, seed, samples) for seed in range(options.tasks)]
        hits = sum(future.result() for future in futures)
        elapsed = time.perf_counter() - submitted
    total = options.tasks * samples
    estimate = 4.0 * hits / total
    print(f"result: pi ~= {estimate:.6f} from {total:,} samples in {options.tasks:,} tasks "
          f"(error {abs(estimate - math.pi):.6f})")
    print(f"throughput: {options.tasks / elapsed:,.0f} tasks/s ({options.tasks:,} tasks in {elapsed:.3f} s)")
    return 0
