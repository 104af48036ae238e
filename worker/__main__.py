"""``python -m worker --id ID --fd FD --manager-pid PID [--control-fd FD --index N] [--cpus 0,1]``: one worker.

CPU pinning is applied here, first, before anything imports user code; accelerator
pinning already arrived in the environment the manager planned for this worker.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Run one fabric worker.")
    parser.add_argument("--id", required=True, help="worker id (also its socket identity)")
    parser.add_argument("--fd", type=int, required=True, help="inherited stream socket to the manager")
    parser.add_argument("--manager-pid", type=int, required=True, help="exit when this parent is gone")
    parser.add_argument("--max-result-bytes", type=int, default=128 * 1024 * 1024,
                        help="results larger than this fail with PayloadTooLarge")
    parser.add_argument("--control-fd", type=int, default=None,
                        help="inherited memory shared with the manager (fabric.control): its stop flag, our task count")
    parser.add_argument("--index", type=int, default=0, help="this worker's place among its manager's workers")
    parser.add_argument("--cpus", default="", help="comma list of CPU ids to pin this worker to")
    parser.add_argument("--log-level", default=None, help="logging level (default: FABRIC_LOG_LEVEL or WARNING)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, [int(cpu) for cpu in args.cpus.split(",")])
    from fabric.process import configure_logging
    from worker.worker import main as run

    configure_logging(args.log_level)
    run(args.id, args.fd, args.manager_pid, args.max_result_bytes, args.control_fd, args.index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
