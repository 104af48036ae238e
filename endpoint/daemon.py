"""The endpoint daemon: an endpoint's interchange, run for ``fabric endpoint start``.

``python -m endpoint.daemon DIR`` is the daemon that ``start`` spawns (a new session, not
tied to the ``fabric`` process that started it, logging to ``DIR/endpoint.log``);
``start --foreground`` calls ``serve`` in its own process. Either way the interchange runs
with the registration stored in the endpoint's folder (``endpoint.home``) until it stops
or SIGTERM/SIGINT arrives; the pid file is released on the way out.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from endpoint.exits import clear_exit, exit_kind, record_exit
from endpoint.home import DAEMON_MODULE, EndpointPaths, EndpointSettings, release_pid_file, stored_registration
from fabric.errors import ConfigError

logger = logging.getLogger(__name__)


class _Stop(BaseException):
    """SIGTERM or SIGINT arrived: unwind through the interchange's clean-up."""


def _on_signal(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up at a time; `stop` kills if it hangs
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def serve(paths: EndpointPaths, *, detached: bool) -> int:
    """Run the endpoint's interchange in this process until it stops or a signal arrives."""
    from interchange.interchange import main as run_interchange

    settings = EndpointSettings.load(paths)
    registration = stored_registration(paths)
    if registration is None:
        raise ConfigError(f"{paths.registration} is missing: start the endpoint with `fabric endpoint start`")
    paths.spool.mkdir(mode=0o700, exist_ok=True)
    config = settings.interchange_config(registration, str(paths.spool))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    clear_exit(paths)
    logger.info("endpoint %s (%s) starting, pid %d: service %s, forwarder %s", paths.name, config.endpoint_id,
                os.getpid(), settings.service_url, config.upstream_address)
    try:
        reason = run_interchange(config, exit_with_parent=not detached)
    except _Stop as stop:
        reason = f"stopped by {stop}"
        record_exit(paths, "stopped", reason)
    else:  # the interchange may have caught the signal itself ("terminated by SIGTERM")
        record_exit(paths, exit_kind(reason), reason)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    logger.info("endpoint %s exiting: %s", paths.name, reason)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m endpoint.daemon DIR``: the endpoint daemon ``start`` spawns."""
    from fabric.logs import configure

    parser = argparse.ArgumentParser(prog=f"python -m {DAEMON_MODULE}", description="Run an endpoint daemon.")
    parser.add_argument("directory", help="the endpoint's folder (fabric_home()/endpoints/NAME)")
    parser.add_argument("--log-level", default=None, type=str.upper)
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    options = parser.parse_args(argv)
    os.environ.pop("FABRIC_TOKEN", None)  # registered already: the daemon never needs the owner's token
    directory = Path(options.directory).absolute()
    paths = EndpointPaths.of(directory.name, directory.parent.parent)
    configure(options.log_level or os.environ.get("FABRIC_LOG_LEVEL") or "INFO", options.log_format,
              path=paths.log)  # rotating (fabric.logs); stdout and stderr still go to the log too
    try:
        return serve(paths, detached=True)
    except Exception as exc:
        logger.exception("endpoint %s failed", paths.name)
        record_exit(paths, "crashed", f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        release_pid_file(paths, os.getpid())



if __name__ == "__main__":  # the daemon: run this module's main under its own name (logger names)
    from endpoint.daemon import main as run_daemon

    sys.exit(run_daemon())
