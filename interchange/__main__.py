"""``python -m interchange --config JSON [--detached]``: one interchange process.

The local ``Endpoint`` starts it as its child (it exits with its parent); ``--detached``
runs it on its own, outliving whoever started it (an endpoint daemon). Exit status: 0
once it stopped (shutdown requested, SIGTERM or SIGINT), 1 if it cannot run as configured.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fabric.config import InterchangeConfig
from fabric.errors import FabricError
from fabric.process import configure_logging

logger = logging.getLogger("interchange")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interchange", description="Run one fabric interchange.")
    parser.add_argument("--config", required=True, help="InterchangeConfig as a JSON object")
    parser.add_argument("--log-level", default=None, help="logging level (default: FABRIC_LOG_LEVEL or WARNING)")
    parser.add_argument("--detached", action="store_true",
                        help="keep running when the process that started it exits (a daemon)")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from interchange.interchange import main as run

    try:
        run(InterchangeConfig.from_json(args.config), exit_with_parent=not args.detached)
    except FabricError as exc:  # a configuration that cannot work, a spool folder in use
        logger.error("interchange cannot run: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
