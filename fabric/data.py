"""Data by reference: values stored once in the service's data store and fetched where used.

``put(value, client)`` serializes a value, uploads it once (content-addressed: the SHA-256
of the bytes; a value the service already holds for you is not sent again) and returns a
``Ref``. A ``Ref`` passed as an argument (at any depth) reaches the function as the value:
unpickling a ``Ref`` fetches the bytes (with the capability the service issued, no user
token) into a per-node cache and deserializes them. The ``Executor`` does the same on its own
for a call whose serialized arguments exceed ``THRESHOLD`` bytes, and a worker for a result
over ``THRESHOLD`` of a task given a reference (stored as the task's owner, with the upload
capability the reference carries), so large results never ride through the service either.

The per-node cache (``FABRIC_DATA_CACHE``, default ``<tmp>/fabric-data-<uid>``) holds one file
per hash. One process per node fetches a given hash (a lock file); the others wait for it. A
cached file is verified against its hash once per process before use: a mismatch (a
corrupted file) is deleted and fetched again, never used. A blob the service no longer has
(purged, or not the submitter's) fails the task using it with ``DataUnavailable``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, Protocol

from fabric.errors import FabricError
from fabric.serialize import deserialize, serialize



class BlobClient(Protocol):
    """What ``put`` needs of a client (``sdk.client.Client`` is one)."""

    service_url: str

    def blob_info(self, digest: str) -> dict[str, Any] | None: ...

    def put_blob(self, digest: str, data: bytes) -> dict[str, Any]: ...

logger = logging.getLogger(__name__)

THRESHOLD = 1024 * 1024
"""Serialized arguments above this many bytes travel by reference (the ``Executor``)."""
CHUNK = 1024 * 1024

_sink = threading.local()  # a worker's task: where a large result may go (result_sink)
_verified: set[tuple[str, int, int]] = set()  # (hash, inode, mtime_ns) checked in this process
_verified_lock = threading.Lock()


class DataUnavailable(FabricError):
    """A referenced blob cannot be fetched: purged, never stored, or not its user's."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"blob {digest} is unavailable: {reason}")
        self.digest, self.reason = digest, reason


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """A value in the service's data store: its hash and size, where to fetch it, and the capability to."""

    digest: str
    size: int
    url: str
    capability: str
    upload: str = ""  # lets the task given this reference store a large result (its owner's)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load, (self.digest, self.size, self.url, self.capability, self.upload))

    def get(self) -> Any:
        """The value (fetched into this node's cache if it is not there yet)."""
        return _load(self.digest, self.size, self.url, self.capability)


def digest_of(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def put(value: Any, client: BlobClient) -> Ref:
    """Store ``value`` (serialized) in the service's data store once; its ``Ref``."""
    return put_bytes(serialize(value), client)


def put_bytes(data: bytes, client: BlobClient) -> Ref:
    """Store already serialized bytes (uploaded only if the service does not hold them for you)."""
    digest = digest_of(data)
    held = client.blob_info(digest)
    reply = held if held is not None else client.put_blob(digest, data)
    return Ref(digest, len(data), client.service_url, str(reply["capability"]), str(reply.get("upload", "")))


def by_reference(payload: bytes, client: BlobClient) -> bytes:
    """Serialized arguments, replaced by a reference to them (they unpickle as the original ``(args, kwargs)``)."""
    return serialize(put_bytes(payload, client))


def cache_dir() -> str:
    return os.environ.get("FABRIC_DATA_CACHE") or os.path.join(tempfile.gettempdir(), f"fabric-data-{os.getuid()}")


def _load(digest: str, size: int, url: str, capability: str, upload: str = "") -> Any:
    """Unpickling a ``Ref``: the value, from this node's cache (fetched first if need be)."""
    if upload and getattr(_sink, "open", False):
        _sink.target = (url, upload)
    with open(cached(digest, url, capability), "rb") as file:
        return deserialize(file.read())


def cached(digest: str, url: str, capability: str) -> str:
    """The path of the blob in this node's cache, verified; fetched once per node."""
    directory = cache_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, digest)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch per node; the others find the file
        if not _is_verified(path, digest):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            _fetch(path, digest, url, capability)
            if not _is_verified(path, digest):
                raise DataUnavailable(digest, "the fetched bytes do not match their hash")
    return path


def _is_verified(path: str, digest: str) -> bool:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return False
    key = (digest, stat.st_ino, stat.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return True
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)
    if hasher.hexdigest() != digest:
        return False
    with _verified_lock:
        _verified.add(key)
    return True


def _fetch(path: str, digest: str, url: str, capability: str) -> None:
    address = f"{url.rstrip('/')}/v1/blobs/{digest}?" + urllib.parse.urlencode({"capability": capability})
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fetch-")
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as file, urllib.request.urlopen(address, timeout=60) as response:  # noqa: S310
            while chunk := response.read(CHUNK):
                hasher.update(chunk)
                file.write(chunk)
        os.replace(temporary, path)
        if hasher.hexdigest() == digest:  # verified on the way in: no second pass over the bytes
            stat = os.stat(path)
            with _verified_lock:
                _verified.add((digest, stat.st_ino, stat.st_mtime_ns))
    except urllib.error.HTTPError as exc:
        raise DataUnavailable(digest, f"the service answered {exc.code}") from exc
    except OSError as exc:
        raise DataUnavailable(digest, f"cannot fetch it from {url}: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def result_sink() -> Iterator[None]:
    """Around one task on a worker: a ``Ref`` among its arguments names where (and as whom) a
    result over ``THRESHOLD`` bytes is stored (``result_by_reference``); nothing carries over
    to the next task."""
    _sink.open, _sink.target = True, None
    try:
        yield
    finally:
        _sink.open, _sink.target = False, None


def result_by_reference(result: bytes) -> bytes:
    """A serialized result, or (over ``THRESHOLD``, in a task given a reference) a reference to it,
    uploaded to the service's data store with the capability that came with the task."""
    target = getattr(_sink, "target", None)
    if len(result) <= THRESHOLD or target is None:
        return result
    url, upload = target
    digest = digest_of(result)
    address = f"{url.rstrip('/')}/v1/blobs/{digest}?" + urllib.parse.urlencode({"capability": upload})
    request = urllib.request.Request(address, data=result, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            reply = json.loads(response.read())
    except OSError as exc:  # the service cannot take it: the result goes inline as before
        logger.warning("storing a result of %d bytes by reference failed: %s", len(result), exc)
        return result
    return serialize(Ref(digest, len(result), url, str(reply["capability"]), upload))
