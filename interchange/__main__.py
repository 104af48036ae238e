"""``python -m interchange --config JSON``: one interchange process (started by an endpoint)."""

from __future__ import annotations

import argparse
import sys

from fabric.config import InterchangeConfig
from fabric.process import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interchange", description="Run one fabric interchange.")
    parser.add_argument("--config", required=True, help="InterchangeConfig as a JSON object")
    parser.add_argument("--log-level", default=None, help="logging level (default: FABRIC_LOG_LEVEL or WARNING)")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from interchange.interchange import main as run

    run(InterchangeConfig.from_json(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
