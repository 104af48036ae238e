"""Results the service has not acknowledged yet, in memory and on disk.

A ``ResultSpool`` keeps results as *segments*, each the results of one ``ResultBatch``,
either in memory or in one file of the spool folder. ``ack`` forgets results; a segment
whose results are all acknowledged is dropped (its file deleted). Results sent upstream
are ``hold``-en in memory, up to ``memory_limit`` bytes of payload: past it the oldest
segments are written to disk. Results that could not be sent (the service is away) are
``store``-d straight to disk, so memory does not grow however long the outage. On start
every segment file already in the folder (left by an interchange that stopped while the
service was away) is loaded; its results are sent again like any other unacknowledged one.

Files. ``<number>.results`` holds one msgpack map: ``format`` (1), ``ids``, ``kinds``,
``sizes`` (the columns of a ``ResultBatch`` header, checked by the same rules) and
``blob`` (the payloads, concatenated). Payloads stay opaque bytes: nothing here ever
unpickles. A file is written under a temporary name, flushed to disk, then renamed, so a
``.results`` file is always whole; one that cannot be read or fails the checks (and any
temporary file a crash left behind) is logged and renamed ``*.bad``, never fatal. A
``lock`` file (``flock``) keeps a second interchange out of the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack

from fabric.protocol import ResultBatch
from interchange.errors import SpoolError

logger = logging.getLogger(__name__)

MEMORY_LIMIT = 64 * 1024 * 1024
"""Bytes of unacknowledged payloads kept in memory before the oldest go to disk."""

FORMAT = 1
SUFFIX = ".results"


@dataclasses.dataclass(slots=True, eq=False)
class Segment:
    """The results of one batch: in memory (``batch``) or on disk (``path``)."""

    number: int
    live: set[Any]  # ids not acknowledged yet
    nbytes: int  # payload bytes of the whole batch
    batch: ResultBatch | None = None
    path: Path | None = None


class SegmentUnreadable(Exception):
    """A segment file is truncated, not msgpack, or breaks the ``ResultBatch`` rules."""


def _nbytes(blob: Any) -> int:
    return len(blob) if type(blob) is bytes else memoryview(blob).nbytes


def encode_segment(batch: ResultBatch) -> bytes:
    return msgpack.packb({"format": FORMAT, "ids": batch.task_ids, "kinds": batch.kinds, "sizes": batch.sizes,
                          "blob": memoryview(batch.blob)}, use_bin_type=True)


def decode_segment(data: bytes) -> ResultBatch:
    """The batch a segment file holds; ``SegmentUnreadable`` for anything malformed."""
    try:
        record = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("blob"), bytes):
            raise SegmentUnreadable(f"not a format {FORMAT} segment")
        batch = ResultBatch.from_header(record, (b"", record["blob"]))
    except SegmentUnreadable:
        raise
    except Exception as exc:  # msgpack raises many types; ProtocolError for bad columns
        raise SegmentUnreadable(f"{type(exc).__name__}: {exc}") from exc
    assert isinstance(batch, ResultBatch)
    return batch


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path``, all or nothing: a temporary file, fsynced, then renamed."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _subset(batch: ResultBatch, ids: set[Any]) -> ResultBatch:
    """The results of ``batch`` whose task ids are in ``ids``."""
    if len(ids) == len(batch) and all(i in ids for i in batch.task_ids):
        return batch
    return ResultBatch.build([r for r in batch.results() if r[0] in ids])


class ResultSpool:
    """Unacknowledged results by task id, in memory segments and segment files."""

    def __init__(self, directory: str | os.PathLike[str], *, memory_limit: int = MEMORY_LIMIT) -> None:
        self.directory = Path(directory)
        self.memory_limit = memory_limit
        self.memory_bytes = 0
        self.segments: dict[int, Segment] = {}  # oldest first
        self.where: dict[Any, Segment] = {}
        self.moved_aside: list[Path] = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(str(self.directory), f"cannot create: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock)
            raise SpoolError(str(self.directory), "in use by another interchange") from exc
        self._numbers = itertools.count(self._load() + 1)

    # -- queries -------------------------------------------------------------------------
    def __contains__(self, task_id: Any) -> bool:
        return task_id in self.where

    def __len__(self) -> int:
        return len(self.where)

    def files(self) -> list[Path]:
        return [s.path for s in self.segments.values() if s.path is not None]

    def pending(self) -> list[Segment]:
        """Every segment with unacknowledged results, oldest first (a snapshot)."""
        return list(self.segments.values())

    # -- adding and forgetting -----------------------------------------------------------
    def hold(self, batch: ResultBatch) -> None:
        """Keep the results of ``batch`` (sent) until acknowledged: in memory while there is room."""
        self._add(batch)
        if self.memory_bytes > self.memory_limit:
            self._spill(lambda: self.memory_bytes > self.memory_limit)

    def store(self, batch: ResultBatch) -> None:
        """Keep the results of ``batch`` (not sent) on disk until acknowledged."""
        segment = self._add(batch)
        if segment is not None:
            self._write(segment)

    def ack(self, task_ids: Iterable[Any]) -> int:
        """Forget the results of ``task_ids``; returns how many were held."""
        forgotten = 0
        for task_id in task_ids:
            segment = self.where.pop(task_id, None)
            if segment is None:
                continue
            forgotten += 1
            segment.live.discard(task_id)
            if not segment.live:
                self._drop(segment)
        return forgotten

    def spill(self) -> None:
        """Write every segment still in memory to disk (the interchange is stopping)."""
        self._spill(lambda: True)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock)

    # -- reading back --------------------------------------------------------------------
    def read(self, segment: Segment) -> ResultBatch | None:
        """The unacknowledged results of ``segment`` (None: none left, or its file is unreadable)."""
        if not segment.live or self.segments.get(segment.number) is not segment:
            return None
        batch = segment.batch
        if batch is None:
            assert segment.path is not None
            try:
                batch = decode_segment(segment.path.read_bytes())
            except (OSError, SegmentUnreadable) as exc:
                self._lose(segment, str(exc))
                return None
        return _subset(batch, segment.live)

    def results_for(self, task_ids: Iterable[Any]) -> list[ResultBatch]:
        """The unacknowledged results of ``task_ids`` (those held), one batch per segment."""
        wanted: dict[Segment, set[Any]] = {}
        for task_id in task_ids:
            segment = self.where.get(task_id)
            if segment is not None:
                wanted.setdefault(segment, set()).add(task_id)
        batches = []
        for segment, ids in wanted.items():
            batch = self.read(segment)
            if batch is not None:
                batches.append(_subset(batch, ids & segment.live))
        return batches

    # -- internals -----------------------------------------------------------------------
    def _add(self, batch: ResultBatch) -> Segment | None:
        """A new memory segment of the results of ``batch`` not held yet (None: nothing new)."""
        if any(i in self.where for i in batch.task_ids) or len(set(batch.task_ids)) != len(batch):
            fresh: dict[Any, tuple[Any, int, memoryview]] = {}  # a result held (or repeated) keeps its first copy
            for result in batch.results():
                if result[0] not in self.where:
                    fresh.setdefault(result[0], result)
            batch = ResultBatch.build(list(fresh.values()))
        if not len(batch):
            return None
        segment = Segment(number=next(self._numbers), live=set(batch.task_ids), nbytes=_nbytes(batch.blob),
                          batch=batch)
        self.segments[segment.number] = segment
        self.where.update(dict.fromkeys(batch.task_ids, segment))
        self.memory_bytes += segment.nbytes
        return segment

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{SUFFIX}"

    def _spill(self, more: Callable[[], bool]) -> None:
        """Write memory segments to disk, oldest first, while ``more()`` says so."""
        for segment in list(self.segments.values()):
            if not more():
                return
            if segment.batch is not None and not self._write(segment):
                return

    def _write(self, segment: Segment) -> bool:
        """Move a memory segment to disk; False (and it stays in memory) if the disk refuses."""
        assert segment.batch is not None
        path = self._path(segment.number)
        try:
            write_atomically(path, encode_segment(_subset(segment.batch, segment.live)))
        except OSError as exc:  # disk full or gone: keep the results in memory rather than lose them
            logger.error("cannot write results to the spool (%s): keeping %d in memory", exc, len(segment.live))
            return False
        segment.batch, segment.path = None, path
        self.memory_bytes -= segment.nbytes
        return True

    def _drop(self, segment: Segment) -> None:
        del self.segments[segment.number]
        if segment.batch is not None:
            self.memory_bytes -= segment.nbytes
        if segment.path is not None:
            try:
                segment.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.error("cannot delete acknowledged spool file %s: %s", segment.path, exc)

    def _lose(self, segment: Segment, reason: str) -> None:
        """A segment file went bad after it was loaded: move it aside and forget its results."""
        logger.error("spool file %s unreadable (%s): %d results lost (the service runs their tasks again)",
                     segment.path, reason, len(segment.live))
        for task_id in segment.live:
            self.where.pop(task_id, None)
        del self.segments[segment.number]
        if segment.path is not None:
            self._move_aside(segment.path)

    def _move_aside(self, path: Path) -> None:
        target = path.with_name(path.name.lstrip(".") + ".bad")
        try:
            os.replace(path, target)
        except OSError as exc:
            logger.error("cannot move %s aside: %s", path, exc)
            return
        self.moved_aside.append(target)

    def _load(self) -> int:
        """Adopt the segment files already in the folder; returns the highest segment number."""
        highest = 0
        for temporary in sorted(self.directory.glob(f".*{SUFFIX}.tmp")):
            logger.warning("moving aside %s, a spool file whose writing was interrupted", temporary)
            self._move_aside(temporary)
        found = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem = path.name[:-len(SUFFIX)]
            if stem.isdigit():
                found.append((int(stem), path))
            else:
                logger.warning("moving aside %s: not a spool file name", path)
                self._move_aside(path)
        for number, path in sorted(found):
            highest = max(highest, number)
            try:
                batch = decode_segment(path.read_bytes())
            except (OSError, SegmentUnreadable) as exc:
                logger.error("moving aside spool file %s: %s", path, exc)
                self._move_aside(path)
                continue
            ids = {i for i in batch.task_ids if i not in self.where}
            if not ids:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            segment = Segment(number=number, live=ids, nbytes=_nbytes(batch.blob), path=path)
            self.segments[number] = segment
            self.where.update(dict.fromkeys(ids, segment))
        if self.where:
            logger.info("spool %s: %d results of an earlier run wait for the service", self.directory,
                        len(self.where))
        return highest
