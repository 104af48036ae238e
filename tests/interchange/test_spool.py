"""Unit tests of the result spool (``interchange.spool``): memory, disk, acks, restarts, bad files."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import msgpack
import pytest

from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR, RESULT_TASK_ERROR, ResultBatch
from interchange.errors import SpoolError
from interchange.spool import ResultSpool, decode_segment, encode_segment


def batch(*task_ids: Any, size: int = 10) -> ResultBatch:
    return ResultBatch.build([(i, RESULT_OK, str(i).encode().ljust(size, b".")) for i in task_ids])


def results(batches: list[ResultBatch] | ResultBatch | None) -> dict[Any, tuple[int, bytes]]:
    if batches is None:
        return {}
    if isinstance(batches, ResultBatch):
        batches = [batches]
    return {i: (k, bytes(p)) for b in batches for i, k, p in b.results()}


def everything(spool: ResultSpool) -> dict[Any, tuple[int, bytes]]:
    found: dict[Any, tuple[int, bytes]] = {}
    for segment in spool.pending():
        found.update(results(spool.read(segment)))
    return found


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.results"))


@pytest.fixture
def spools(tmp_path: Path):
    opened: list[ResultSpool] = []

    def open_spool(**options: Any) -> ResultSpool:
        spool = ResultSpool(tmp_path / "spool", **options)
        opened.append(spool)
        return spool

    yield open_spool
    for spool in opened:
        spool.close()


def test_held_results_stay_in_memory_until_acknowledged(spools, tmp_path: Path) -> None:
    spool = spools()
    spool.hold(batch("a", "b"))
    spool.hold(batch("c"))
    assert len(spool) == 3 and "a" in spool and "z" not in spool
    assert spool.memory_bytes == 30 and segment_files(tmp_path / "spool") == []
    assert spool.ack(["a", "c", "unknown"]) == 2
    assert list(everything(spool)) == ["b"] and spool.memory_bytes == 20  # b's batch is alive until b is acked
    spool.ack(["b"])
    assert len(spool) == 0 and spool.memory_bytes == 0 and spool.pending() == []


def test_stored_results_go_to_disk_and_their_file_goes_with_the_last_ack(spools, tmp_path: Path) -> None:
    spool = spools()
    spool.store(batch("a", "b"))
    spool.store(batch("c"))
    assert spool.memory_bytes == 0 and len(segment_files(tmp_path / "spool")) == 2
    assert everything(spool) == {"a": (0, b"a........."), "b": (0, b"b........."), "c": (0, b"c.........")}
    spool.ack(["a"])
    assert len(segment_files(tmp_path / "spool")) == 2
    assert results(spool.read(spool.pending()[0])) == {"b": (0, b"b.........")}
    spool.ack(["b", "c"])
    assert segment_files(tmp_path / "spool") == [] and len(spool) == 0


def test_memory_past_the_limit_spills_the_oldest_to_disk(spools, tmp_path: Path) -> None:
    spool = spools(memory_limit=25)
    spool.hold(batch(1))
    spool.hold(batch(2))
    assert spool.memory_bytes == 20 and segment_files(tmp_path / "spool") == []
    spool.hold(batch(3))  # 30 bytes > 25: the oldest goes to disk
    assert spool.memory_bytes == 20 and len(segment_files(tmp_path / "spool")) == 1
    assert spool.pending()[0].path is not None and spool.pending()[0].batch is None
    assert set(everything(spool)) == {1, 2, 3}
    spool.ack([1])
    assert segment_files(tmp_path / "spool") == []


def test_spill_writes_only_unacknowledged_results(spools, tmp_path: Path) -> None:
    spool = spools()
    spool.hold(batch("a", "b", "c"))
    spool.ack(["b"])
    spool.spill()
    assert spool.memory_bytes == 0
    [name] = segment_files(tmp_path / "spool")
    assert results(decode_segment((tmp_path / "spool" / name).read_bytes())) == {
        "a": (0, b"a........."), "c": (0, b"c.........")}


def test_results_survive_a_restart(spools, tmp_path: Path) -> None:
    first = spools()
    first.store(batch("a", "b"))
    first.hold(ResultBatch.build([("c", RESULT_REMOTE_ERROR, b"\x80\x05error"), (4, RESULT_TASK_ERROR, b"")]))
    first.hold(batch("d"))
    first.ack(["d"])
    first.spill()
    expected = everything(first)
    first.close()

    second = spools()
    assert len(second) == 4 and "c" in second and 4 in second
    assert everything(second) == expected
    second.store(batch("e"))  # numbering continues after the files found
    assert [s.number for s in second.pending()] == sorted(s.number for s in second.pending())
    second.ack(["a", "b", "c", 4, "e"])
    assert segment_files(tmp_path / "spool") == []


def test_results_for_picks_held_ids_across_segments(spools) -> None:
    spool = spools(memory_limit=15)
    spool.hold(batch("a", "b"))
    spool.hold(batch("c", "d"))  # the first segment spills
    assert results(spool.results_for(["a", "d", "zz", "a"])) == {"a": (0, b"a........."), "d": (0, b"d.........")}
    assert spool.results_for(["zz"]) == []


def test_a_result_held_already_keeps_its_first_copy(spools) -> None:
    spool = spools()
    spool.hold(batch("a"))
    spool.hold(ResultBatch.build([("a", RESULT_OK, b"second"), ("b", RESULT_OK, b"b"), ("b", RESULT_OK, b"again")]))
    assert everything(spool) == {"a": (0, b"a........."), "b": (0, b"b")}
    spool.hold(ResultBatch.build([("a", RESULT_OK, b"third")]))
    assert len(spool.pending()) == 2


def test_a_second_interchange_cannot_use_the_same_folder(spools) -> None:
    spools()
    with pytest.raises(SpoolError, match="in use"):
        spools()


def test_a_folder_that_cannot_be_created_is_a_spool_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpoolError, match="cannot create"):
        ResultSpool(blocker / "spool")


@pytest.mark.parametrize("content", [
    b"", b"\xc1", b"garbage that is not msgpack \xff\xfe", msgpack.packb([1, 2, 3]),
    msgpack.packb({"format": 2, "ids": [], "kinds": [], "sizes": [], "blob": b""}),
    msgpack.packb({"format": 1, "ids": ["a"], "kinds": [0], "sizes": [5], "blob": b"abc"}, use_bin_type=True),
    msgpack.packb({"format": 1, "ids": [["a"]], "kinds": [0], "sizes": [1], "blob": b"a"}, use_bin_type=True),
    msgpack.packb({"format": 1, "ids": ["a"], "kinds": [9], "sizes": [1], "blob": b"a"}, use_bin_type=True),
    msgpack.packb({"format": 1, "ids": ["a"], "kinds": [0], "sizes": [1], "blob": "a"}, use_bin_type=True),
    encode_segment(batch("x", "y"))[:-3],  # truncated
], ids=repr)
def test_bad_files_are_moved_aside_and_the_rest_loaded(tmp_path: Path, content: bytes, caplog) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "000000000001.results").write_bytes(content)
    (folder / "000000000002.results").write_bytes(encode_segment(batch("good")))
    with caplog.at_level(logging.ERROR, logger="interchange.spool"):
        spool = ResultSpool(folder)
    try:
        assert list(everything(spool)) == ["good"]
        assert [p.name for p in spool.moved_aside] == ["000000000001.results.bad"]
        assert segment_files(folder) == ["000000000002.results"]
        assert "000000000001.results" in caplog.text
    finally:
        spool.close()
    again = ResultSpool(folder)  # the bad file stays aside
    try:
        assert list(everything(again)) == ["good"] and again.moved_aside == []
    finally:
        again.close()


def test_leftovers_of_an_interrupted_write_and_strange_names_are_moved_aside(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / ".000000000003.results.tmp").write_bytes(encode_segment(batch("half")))
    (folder / "notes.results").write_bytes(b"x")
    spool = ResultSpool(folder)
    try:
        assert len(spool) == 0
        assert sorted(p.name for p in spool.moved_aside) == ["000000000003.results.tmp.bad", "notes.results.bad"]
    finally:
        spool.close()


def test_a_file_that_goes_bad_after_loading_loses_only_its_results(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "spool"
    first = ResultSpool(folder)
    first.store(batch("a"))
    first.store(batch("b"))
    first.close()
    spool = ResultSpool(folder)
    try:
        spool.pending()[0].path.write_bytes(b"\xc1")  # type: ignore[union-attr]
        with caplog.at_level(logging.ERROR, logger="interchange.spool"):
            assert list(everything(spool)) == ["b"]
        assert "a" not in spool and len(spool) == 1 and "1 results lost" in caplog.text
    finally:
        spool.close()


def test_files_are_written_atomically(spools, tmp_path: Path, monkeypatch) -> None:
    spool = spools()
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    spool.store(batch("a"))  # the disk refuses: the result stays in memory, nothing half-written remains
    assert "a" in spool and spool.memory_bytes == 10
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == ["lock"]
    monkeypatch.setattr(os, "fsync", real_fsync)
    spool.spill()
    assert len(segment_files(tmp_path / "spool")) == 1 and spool.memory_bytes == 0
