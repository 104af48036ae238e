"""``python -m benchmarks COMMAND [options]``: the benchmark suite (the same as ``fabric bench``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, prog="python -m benchmarks")


if __name__ == "__main__":
    sys.exit(main())
