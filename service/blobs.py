"""The service's data store: content-addressed blobs on disk, owned per user.

A blob is the bytes of one serialized value (``fabric.data.Ref``), named by the SHA-256 of
those bytes and kept once in ``<data_dir>/blobs/<hash>`` however many users uploaded it; a
small SQLite file beside them (``blobs.db``) records who owns which (``owner, hash, size``),
when each was last used, and how often it was fetched. Uploads stream to a temporary file in
the same directory, hashed on the way, and enter under their name only if the hash is the one
announced (nothing partial is ever visible: a failed or refused upload leaves no file).
Downloads stream from the file. Neither holds a blob in memory.

A worker fetches with a *capability* instead of a user's token: an HMAC (a secret kept in
``blobs/secret``) of the owner and the hash, handed out with the upload's reply and carried
in the reference. ``purge`` deletes blobs unused for ``result_ttl`` (the tasks that used them
are purged by then) and files no owner keeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO

CHUNK = 1024 * 1024
HASH_LENGTH = 64  # hex SHA-256

_TABLE = ("CREATE TABLE IF NOT EXISTS blobs (owner TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL, "
          "created REAL NOT NULL, last_used REAL NOT NULL, downloads INTEGER NOT NULL DEFAULT 0, "
          "PRIMARY KEY (owner, hash))")


class BlobError(Exception):
    """Base of the blob store's refusals (the API turns each into its HTTP status)."""


class HashMismatch(BlobError):
    """The uploaded bytes do not hash to the name they were sent under."""


class TooLarge(BlobError):
    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")
        self.what, self.size, self.limit = what, size, limit


class DiskFull(BlobError):
    """No room left on the service's disk; nothing of the upload was kept."""


def is_hash(text: str) -> bool:
    return len(text) == HASH_LENGTH and all(c in "0123456789abcdef" for c in text)


class BlobStore:
    """Blobs under ``directory``; safe for many threads (a connection per thread)."""

    def __init__(self, directory: str, *, quota_bytes: int) -> None:
        self.directory = directory
        self.quota_bytes = quota_bytes
        os.makedirs(directory, exist_ok=True)
        self._local = threading.local()
        self._secret = self._load_secret()
        with self._db() as db:
            db.execute(_TABLE)

    def _load_secret(self) -> bytes:
        path = os.path.join(self.directory, "secret")
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_hex(32))
        with open(path) as file:
            return file.read().strip().encode()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(os.path.join(self.directory, "blobs.db"), timeout=30.0,
                                                   isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def path(self, digest: str) -> str:
        return os.path.join(self.directory, digest)

    def capability(self, owner: str, digest: str) -> str:
        """What lets a worker fetch ``digest`` on behalf of ``owner``."""
        return owner + "." + hmac.new(self._secret, f"{owner}/{digest}".encode(), hashlib.sha256).hexdigest()

    def upload_capability(self, owner: str) -> str:
        """What lets a worker store a task's result as ``owner`` (``fabric.data.result_by_reference``)."""
        return owner + "." + hmac.new(self._secret, f"{owner}/upload".encode(), hashlib.sha256).hexdigest()

    def uploader(self, capability: str) -> str | None:
        """The owner an upload capability speaks for, if it is genuine."""
        owner, _, _ = capability.partition(".")
        return owner if hmac.compare_digest(self.upload_capability(owner), capability) else None

    def owner_of(self, capability: str, digest: str) -> str | None:
        """The owner a capability speaks for, if it is genuine for this blob."""
        owner, _, _ = capability.partition(".")
        return owner if hmac.compare_digest(self.capability(owner, digest), capability) else None

    def has(self, owner: str, digest: str) -> int | None:
        """The blob's size if the owner holds it (and its file is there), else None; marks it used."""
        with self._db() as db:
            row = db.execute("SELECT size FROM blobs WHERE owner = ? AND hash = ?", (owner, digest)).fetchone()
            if row is None or not os.path.exists(self.path(digest)):
                return None
            db.execute("UPDATE blobs SET last_used = ? WHERE owner = ? AND hash = ?", (time.time(), owner, digest))
        return int(row[0])

    def put(self, owner: str, digest: str, stream: IO[bytes], length: int, limit: int) -> int:
        """Store ``length`` bytes from ``stream`` as ``digest`` for ``owner``; returns the size."""
        if length > limit:
            raise TooLarge("blob", length, limit)
        with self._db() as db:
            used = db.execute("SELECT coalesce(sum(size), 0) FROM blobs WHERE owner = ? AND hash != ?",
                              (owner, digest)).fetchone()[0]
        if used + length > self.quota_bytes:
            raise TooLarge("the user's blobs", used + length, self.quota_bytes)
        if not os.path.exists(self.path(digest)):
            self._receive(digest, stream, length)
        now = time.time()
        with self._db() as db:
            db.execute("INSERT INTO blobs (owner, hash, size, created, last_used) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (owner, hash) DO UPDATE SET last_used = excluded.last_used",
                       (owner, digest, length, now, now))
        return length

    def _receive(self, digest: str, stream: IO[bytes], length: int) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".upload-")
        try:
            hasher, left = hashlib.sha256(), length
            with os.fdopen(fd, "wb") as file:
                while left > 0:
                    chunk = stream.read(min(CHUNK, left))
                    if not chunk:
                        raise HashMismatch(f"the upload ended {left} bytes short of {length}")
                    hasher.update(chunk)
                    file.write(chunk)
                    left -= len(chunk)
            if hasher.hexdigest() != digest:
                raise HashMismatch(f"the bytes hash to {hasher.hexdigest()}, not {digest}")
            os.replace(temporary, self.path(digest))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if exc.errno == 28:  # ENOSPC
                raise DiskFull("no space left on the service's disk") from exc
            raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def opened(self, owner: str, digest: str) -> tuple[IO[bytes], int] | None:
        """The blob's file, open, and its size, for a download by (or for) ``owner``; counts the download."""
        size = self.has(owner, digest)
        if size is None:
            return None
        try:
            file = open(self.path(digest), "rb")  # noqa: SIM115 - the response closes it
        except FileNotFoundError:
            return None
        with self._db() as db:
            db.execute("UPDATE blobs SET downloads = downloads + 1 WHERE owner = ? AND hash = ?", (owner, digest))
        return file, size

    def info(self, owner: str, digest: str) -> dict[str, object] | None:
        with self._db() as db:
            row = db.execute("SELECT size, created, last_used, downloads FROM blobs WHERE owner = ? AND hash = ?",
                             (owner, digest)).fetchone()
        if row is None:
            return None
        return {"hash": digest, "size": row[0], "created": row[1], "last_used": row[2], "downloads": row[3]}

    def purge(self, older_than: float) -> int:
        """Drop ownerships unused since ``older_than``, and the files nobody owns now; how many files."""
        with self._db() as db:
            gone = [r[0] for r in db.execute("SELECT DISTINCT hash FROM blobs WHERE last_used < ?", (older_than,))]
            db.execute("DELETE FROM blobs WHERE last_used < ?", (older_than,))
            kept = {r[0] for r in db.execute("SELECT DISTINCT hash FROM blobs")}
        removed = 0
        for digest in set(gone) - kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(digest))
                removed += 1
        return removed
