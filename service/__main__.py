"""``python -m service ...``: the same commands as ``fabric service ...``."""

from __future__ import annotations

import sys

from service.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m service"))
