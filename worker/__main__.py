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
    parser.add_argument("--data-only-arguments", action="store_true",
                        help="decode task arguments data-only, never unpickling them (the endpoint's policy)")
    parser.add_argument("--sandbox", choices=("auto", "required"), default=None,
                        help="hide the --hide folders from the tasks (fabric.sandbox): if the system allows "
                             "(auto, a warning otherwise) or without fail (required: exit if it cannot)")
    parser.add_argument("--hide", action="append", default=[], metavar="PATH",
                        help="a folder tasks must not see (with --sandbox; repeat for more)")
    parser.add_argument("--sandbox-keep-capabilities", action="store_true",
                        help="with --sandbox: hide the folders but keep capabilities (a worker that starts "
                             "containers: its tasks are isolated by them)")
    parser.add_argument("--log-level", default=None, help="logging level (default: FABRIC_LOG_LEVEL or WARNING)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, [int(cpu) for cpu in args.cpus.split(",")])
    from fabric.process import configure_logging

    configure_logging(args.log_level)
    if args.sandbox is not None and not sandbox(args.hide, required=args.sandbox == "required",
                                                keep_capabilities=args.sandbox_keep_capabilities):
        from fabric.sandbox import SANDBOX_REFUSED_EXIT

        return SANDBOX_REFUSED_EXIT
    from worker.worker import main as run

    run(args.id, args.fd, args.manager_pid, args.max_result_bytes, args.control_fd, args.index,
        data_only_arguments=args.data_only_arguments)
    return 0


def sandbox(hidden: list[str], *, required: bool, keep_capabilities: bool = False) -> bool:
    """Enter the sandbox (``fabric.sandbox``) before any task's code is imported; False if
    it is required and unavailable (the worker must not start)."""
    import logging

    from fabric.sandbox import SandboxUnavailable, enter_sandbox

    try:
        enter_sandbox(hidden, keep_capabilities=keep_capabilities)
    except SandboxUnavailable as exc:
        if required:
            logging.getLogger("worker").error("%s; sandbox_workers is required: not starting", exc)
            return False
        logging.getLogger("worker").warning("%s; running tasks WITHOUT hiding %s from them (set "
                                            "sandbox_workers to false to silence this, true to refuse)",
                                            exc, ", ".join(hidden))
    return True


if __name__ == "__main__":
    sys.exit(main())
