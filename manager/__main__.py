"""``python -m manager --config JSON``: one manager process (normally started by a provider)."""

from __future__ import annotations

import argparse
import sys

from fabric.config import ManagerConfig
from fabric.process import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m manager", description="Run one fabric manager.")
    parser.add_argument("--config", required=True, help="ManagerConfig as a JSON object")
    parser.add_argument("--log-level", default=None, help="logging level (default: FABRIC_LOG_LEVEL or WARNING)")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from manager.manager import main as run

    run(ManagerConfig.from_json(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
