"""Keeping the endpoint's secrets away from the code its workers run.

A worker runs whatever its submitter sent; on a shared endpoint that is someone else's
code, running as the endpoint's owner. Three things keep the owner's secrets from it:

* **Hidden folders.** Before it imports anything of a task, a worker enters its own mount
  namespace (Linux ``unshare``) in which each of ``hidden`` (the fabric home with the
  owner's ``credentials.json``, the endpoints' registrations and keys, the managers' key
  files) is covered by an empty read-only tmpfs. It then enters a user namespace of its
  own: it keeps its uid but loses every capability outside, so it can neither unmount
  the covers (the kernel locks them) nor read what its uid does not own. Non-root owners
  need unprivileged user namespaces (``kernel.unprivileged_userns_clone``); root needs nothing.
* **No secret in the environment.** Workers are started without ``FABRIC_TOKEN``
  (``worker_environment``).
* **No reading the brokers' memory.** The endpoint daemon (its interchange) and the
  managers mark themselves non-dumpable (``protect_process``): a process without
  ``CAP_SYS_PTRACE`` (a sandboxed worker, even one running as root) cannot read their
  ``/proc/<pid>/environ``, ``mem`` or open files.

Where namespaces are not available (another OS, user namespaces disabled) the endpoint's
``sandbox_workers`` setting decides: ``None`` (the default) logs a warning and runs
workers without the hidden folders, True makes the worker refuse to start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import site
import sys
from collections.abc import Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38

SANDBOX_REFUSED_EXIT = 3
"""A worker's exit status when its sandbox is required and the system cannot make it."""

SECRET_VARIABLES = ("FABRIC_TOKEN",)
"""Environment variables a worker never inherits."""


class SandboxUnavailable(OSError):
    """The kernel refused a namespace or a mount the sandbox needs (``step`` says which)."""

    def __init__(self, step: str, errno: int) -> None:
        super().__init__(errno, f"cannot sandbox the worker: {step} failed: {os.strerror(errno)}")
        self.step = step


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, step: str) -> None:
    if result != 0:
        raise SandboxUnavailable(step, ctypes.get_errno())


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _own_user_namespace(libc: ctypes.CDLL, flags: int) -> None:
    """Enter a new user namespace (with ``flags``) keeping our uid and gid."""
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(CLONE_NEWUSER | flags), "unshare(CLONE_NEWUSER)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def hidden_existing(paths: Iterable[str]) -> list[str]:
    """The folders of ``paths`` that exist, resolved, outermost first, without repeats; never
    one holding this Python or its installed packages (a ``FABRIC_HOME`` of ``~`` must not
    hide the virtual environment in it: such a folder is left visible, with a warning)."""
    folders = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)}, key=len)
    needed = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.executable, *site.getsitepackages(),
                                            site.getusersitepackages()) if p]
    kept: list[str] = []
    for folder in folders:
        if any(_inside(folder, outer) for outer in kept):
            continue
        if folder == "/" or any(_inside(path, folder) for path in needed):
            logger.warning("not hiding %s from tasks: Python or its packages are in it", folder)
            continue
        kept.append(folder)
    return kept


def enter_sandbox(hidden: Sequence[str], *, keep_capabilities: bool = False) -> None:
    """Cover every folder of ``hidden`` with an empty read-only tmpfs in a mount namespace of
    this process alone, then drop every capability outside it (a user namespace of its own).

    ``keep_capabilities``: skip that last step, for a worker that starts containers (podman
    cannot mount a container's root from a user namespace without capabilities); its tasks
    are then isolated by their containers, and the covers hold only against code that does
    not undo mounts.

    Call it single-threaded, before importing user code. ``SandboxUnavailable`` if the kernel
    refuses (nothing is hidden then)."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("unshare (Linux only)", 38)
    folders = hidden_existing(hidden)
    cwd = os.getcwd()
    libc = _libc()
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    try:
        if os.geteuid() == 0:
            _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        else:
            _own_user_namespace(libc, CLONE_NEWNS)
    except OSError as exc:
        raise SandboxUnavailable("entering a mount namespace", exc.errno or 1) from exc
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    for folder in folders:
        _check(libc.mount(b"fabric-hidden", folder.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          b"size=4k,mode=0555"), f"covering {folder}")
    if not keep_capabilities:
        try:  # a user namespace of our own: the covers are locked, every capability outside is gone
            _own_user_namespace(libc, CLONE_NEWNS)
        except OSError as exc:
            raise SandboxUnavailable("dropping capabilities (a user namespace)", exc.errno or 1) from exc
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    try:  # a working directory inside a covered folder would still reach what is under the cover
        os.chdir(cwd)
    except OSError:
        os.chdir("/")


def protect_process() -> None:
    """Make this process non-dumpable: its ``/proc`` memory, environment and file
    descriptors become unreadable to processes without ``CAP_SYS_PTRACE`` (Linux only)."""
    if sys.platform.startswith("linux"):
        try:
            _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        except OSError:  # pragma: no cover - exotic libc
            logger.warning("cannot make this process non-dumpable", exc_info=True)


def worker_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the secrets a worker must not see (``SECRET_VARIABLES``)."""
    return {key: value for key, value in env.items() if key not in SECRET_VARIABLES}


def default_hidden() -> list[str]:
    """What workers never see by default: the fabric home (``$FABRIC_HOME``, ``~/.fabric``)."""
    paths = [os.path.join(os.path.expanduser("~"), ".fabric")]
    if os.environ.get("FABRIC_HOME"):
        paths.append(os.path.expanduser(os.environ["FABRIC_HOME"]))
    return paths
