"""Where the fabric keeps a user's files: ``$FABRIC_HOME``, else ``~/.fabric``.

::

    credentials.json          what ``fabric login`` stored (``sdk.credentials``)
    endpoints/NAME/           one configured endpoint (``endpoint.home``)
    service/                  a service's data directory, unless ``$FABRIC_SERVICE_DIR`` or
                              ``--data-dir`` says otherwise (``service.config``)
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "FABRIC_HOME"


def fabric_home() -> Path:
    """The folder of the user's fabric files (not created here)."""
    home = os.environ.get(HOME_VARIABLE)
    return Path(home).expanduser() if home else Path.home() / ".fabric"
