"""Starting, watching and ending the fabric's child processes.

Every process exits when its parent is gone: children ask the kernel for a signal when
their parent dies (``exit_with_parent``, Linux ``PR_SET_PDEATHSIG``) and, everywhere,
also compare ``os.getppid()`` with the pid they were started by (``parent_alive``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def exit_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except OSError:  # pragma: no cover - exotic libc
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)


def parent_alive(parent_pid: int) -> bool:
    """True while the process that started us is still our parent."""
    return os.getppid() == parent_pid


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours, plus our ``sys.path`` on ``PYTHONPATH``.

    Local children can then import every module the parent can (functions serialized
    by reference keep working), and ``extra`` (e.g. accelerator pinning) is applied last.
    """
    env = dict(os.environ)
    # A console script's own folder (bin/) comes first on sys.path; other tools put
    # modules there (Parsl installs bin/interchange.py), which would shadow ours.
    bin_dirs = {os.path.abspath(sysconfig.get_path("scripts")), os.path.dirname(os.path.abspath(sys.executable))}
    paths = [p for p in sys.path if p and os.path.isdir(p) and os.path.abspath(p) not in bin_dirs]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if extra:
        env.update(extra)
    return env


def spawn(module: str, args: Sequence[str], *, env: Mapping[str, str] | None = None,
          python: str | None = None, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start ``python -m module args...`` as a child process (``pass_fds`` are inherited)."""
    command = [python or sys.executable, "-m", module, *args]
    logger.debug("starting %s", " ".join(command))
    return subprocess.Popen(command, env=dict(env) if env is not None else child_environment(),
                            stdin=subprocess.DEVNULL, close_fds=True, pass_fds=tuple(pass_fds))


def pidfd(process: subprocess.Popen[bytes]) -> int | None:
    """A file descriptor that becomes readable when ``process`` exits (None if unsupported)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(process.pid))
    except OSError:
        return None


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """Terminate ``process``, kill it if it lingers; returns its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
    return process.returncode


def configure_logging(level: str | None) -> None:
    """Logging set-up for a process entry point (never called on import)."""
    logging.basicConfig(
        level=(level or os.environ.get("FABRIC_LOG_LEVEL", "WARNING")).upper(),
        format=f"%(asctime)s %(levelname)s {os.getpid()} %(name)s: %(message)s",
    )
