"""Unit tests for fabric.protocol: round trips of every message and a strict decoder.

The decoder's contract (module docstring of ``fabric.protocol``): anything malformed
raises ``ProtocolError`` and nothing else; unknown header keys are ignored.
"""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric import protocol
from fabric.errors import ProtocolError
from fabric.protocol import (MAX_BATCH_BYTES, MAX_BATCH_TASKS, PROTOCOL_VERSION, RESULT_OK, RESULT_REMOTE_ERROR,
                             RESULT_TASK_ERROR, CancelTasks, CommandReply, Drain, FunctionDefinitions, Heartbeat,
                             InterchangeRegistration, ManagerCommand, ManagerExiting, ManagerRegistration, Message,
                             RegistrationReply, ResultBatch, ResultsAck, Shutdown, StatusReport, StatusRequest, Task,
                             TaskBatch, WorkerReady, batches_of, decode, encode)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=60, deadline=None)


def received(frames: Sequence[Any]) -> list[bytes]:
    """What a socket would hand the receiver: every frame as plain bytes."""
    return [bytes(frame) for frame in frames]


def round_trip(message: Message) -> Message:
    return decode(received(encode(message)))


def decode_or_reject(frames: Sequence[Any]) -> Message | None:
    """Decode ``frames``; ``ProtocolError`` is the only acceptable failure."""
    try:
        message = decode(frames)
    except ProtocolError:
        return None
    assert isinstance(message, Message)
    return message


def header_of(frames: Sequence[Any]) -> dict[str, Any]:
    return msgpack.unpackb(frames[0], raw=False, strict_map_key=False)


def with_header(frames: Sequence[Any], **changes: Any) -> list[bytes]:
    """``frames`` with the header re-packed after applying ``changes`` (value ``...`` deletes)."""
    header = header_of(frames)
    for key, value in changes.items():
        if value is ...:
            header.pop(key, None)
        else:
            header[key] = value
    return [msgpack.packb(header, use_bin_type=True), *received(frames[1:])]


REGISTRATION = ManagerRegistration(
    manager_id="manager-1", hostname="node-7", pid=4242, cores=16, memory=64 * 2**30,
    accelerators=["0", "1"], python_version="3.11.7", protocol_version=PROTOCOL_VERSION,
    worker_count=4, prefetch=2, capacity=6, block_id="block-3",
)

EXAMPLES: list[Message] = [
    Heartbeat(),
    Shutdown(),
    Shutdown(reason="interchange stopping"),
    FunctionDefinitions(),
    FunctionDefinitions(function_ids=["f1", "f2"], bodies=[b"\x03body-one", b""]),
    TaskBatch(),
    TaskBatch(tasks=[Task(1, "f1", b"args")]),
    TaskBatch(tasks=[
        Task(1, "f1", b"args-1"),
        Task("task-2", "f2", b"", walltime=2.5, retries=3, priority=-1),
        Task(-3, "f1", b"\x00" * 100, walltime=7, retries=0, priority=9),
    ]),
    ResultBatch(),
    ResultBatch.build([(1, RESULT_OK, b"result")]),
    ResultBatch.build(
        [(1, RESULT_OK, b"r1"), ("task-2", RESULT_REMOTE_ERROR, b""), (3, RESULT_TASK_ERROR, b"\xff" * 5)],
        started=[4, "task-5"], capacity=12, elapsed=0.125,
    ),
    REGISTRATION,
    dataclasses.replace(REGISTRATION, block_id=None, accelerators=[]),
    RegistrationReply(accepted=True),
    RegistrationReply(accepted=False, reason="protocol version 2 is not 1", heartbeat_period=0.5,
                      heartbeat_threshold=3),
    Drain(),
    ManagerExiting(),
    ManagerExiting(reason="drained"),
    WorkerReady(worker_id="worker-0", pid=99),
    InterchangeRegistration(endpoint_id="endpoint-1", hostname="login-1", pid=1,
                            manager_address="tcp://127.0.0.1:54001"),
    StatusRequest(request_id=7),
    StatusReport(request_id=7, managers=[{"manager_id": "manager-1", "outstanding": 3}], queued_tasks=10,
                 outstanding_tasks=3, functions=2),
    ManagerCommand(request_id=8, action="drain", manager_id="manager-1"),
    CommandReply(request_id=8, ok=False, message="unknown manager"),
    CancelTasks(task_ids=[1, "task-2"]),
    ResultsAck(task_ids=[]),
    ResultsAck(task_ids=["task-1", 2, b"task-3"]),
]


def example_id(message: Message) -> str:
    return type(message).__name__


# --- round trips -------------------------------------------------------------------------


def test_every_registered_message_class_has_an_example() -> None:
    assert {type(m) for m in EXAMPLES} == set(protocol._REGISTRY.values())


def test_registry_maps_each_tag_to_its_class() -> None:
    for tag, cls in protocol._REGISTRY.items():
        assert cls.tag == tag
        assert issubclass(cls, Message)


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_every_message_round_trips(message: Message) -> None:
    decoded = round_trip(message)
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_header_carries_version_and_tag(message: Message) -> None:
    header = header_of(encode(message))
    assert header["v"] == PROTOCOL_VERSION
    assert header["t"] == message.tag


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_unknown_header_fields_are_ignored(message: Message) -> None:
    frames = with_header(encode(message), added_later={"nested": [1, 2]}, zz_new_flag=True, extra=None)
    assert decode(frames) == message


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_decode_accepts_memoryview_frames(message: Message) -> None:
    frames = [memoryview(frame) for frame in received(encode(message))]
    assert decode(frames) == message


def test_duplicate_tag_is_refused() -> None:
    with pytest.raises(TypeError):
        class AnotherHeartbeat(Message):  # noqa: F841 - defining it is the test
            tag = "heartbeat"
    assert protocol._REGISTRY["heartbeat"] is Heartbeat


# --- task batches --------------------------------------------------------------------------


def test_task_batch_is_one_header_and_one_payload_frame() -> None:
    tasks = [Task(i, "f", b"p%d" % i) for i in range(50)]
    frames = encode(TaskBatch(tasks))
    assert len(frames) == 2
    assert bytes(frames[1]) == b"".join(t.payload for t in tasks)


@pytest.mark.parametrize("count", [0, 1, 1000])
def test_task_batch_sizes(count: int) -> None:
    tasks = [Task(i, f"fn-{i % 3}", bytes([i % 256]) * (i % 7), None, i % 2, i % 4) for i in range(count)]
    decoded = round_trip(TaskBatch(tasks))
    assert isinstance(decoded, TaskBatch)
    assert decoded.tasks == tasks


def test_task_batch_empty_and_large_payloads() -> None:
    large = bytes(range(256)) * 8192  # 2 MiB
    tasks = [Task(1, "f", b""), Task(2, "f", large), Task(3, "f", b""), Task(4, "f", b"x")]
    decoded = round_trip(TaskBatch(tasks))
    assert [bytes(t.payload) for t in decoded.tasks] == [b"", large, b"", b"x"]


def test_task_batch_payloads_are_views_into_one_frame() -> None:
    decoded = round_trip(TaskBatch([Task(1, "f", b"abc"), Task(2, "f", b"de")]))
    assert all(isinstance(t.payload, memoryview) for t in decoded.tasks)
    assert [bytes(t.payload) for t in decoded.tasks] == [b"abc", b"de"]


def test_task_batch_memoryview_payloads() -> None:
    source = b"0123456789"
    tasks = [Task(1, "f", memoryview(source)[2:5]), Task(2, "f", memoryview(b"")), Task(3, "f", b"tail")]
    decoded = round_trip(TaskBatch(tasks))
    assert [bytes(t.payload) for t in decoded.tasks] == [b"234", b"", b"tail"]


def test_task_batch_memoryview_payload_of_wider_items_keeps_every_byte() -> None:
    """A ``memoryview`` over non-byte items (``Frame`` allows any memoryview) must travel whole.

    ``len()`` of such a view counts items, not bytes, so sizes computed with ``len`` do not
    match the joined payload frame.
    """
    payload = memoryview(array.array("d", [1.0, 2.0, 3.0]))
    decoded = round_trip(TaskBatch([Task(1, "f", payload), Task(2, "f", b"after")]))
    assert [bytes(t.payload) for t in decoded.tasks] == [payload.tobytes(), b"after"]


task_ids = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20))
walltimes = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False) | st.integers(0, 10**6)
tasks_strategy = st.builds(
    Task, task_ids, st.text(max_size=32), st.binary(max_size=64), walltimes,
    st.integers(0, 100), st.integers(-(2**31), 2**31),
    st.none() | st.dictionaries(st.sampled_from(["container", "num_nodes", "num_ranks"]),
                                st.integers(1, 64) | st.text(max_size=8)),
)


@ROUND_TRIP
@given(st.lists(tasks_strategy, max_size=30))
def test_task_batch_round_trip_property(tasks: list[Task]) -> None:
    decoded = round_trip(TaskBatch(tasks))
    assert isinstance(decoded, TaskBatch)
    assert decoded.tasks == tasks


# --- result batches ------------------------------------------------------------------------


results_strategy = st.lists(
    st.tuples(task_ids, st.sampled_from([RESULT_OK, RESULT_REMOTE_ERROR, RESULT_TASK_ERROR]),
              st.binary(max_size=64)),
    max_size=30,
)


@ROUND_TRIP
@given(results_strategy, st.lists(task_ids, max_size=10), st.none() | st.integers(0, 10**6),
       st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_result_batch_round_trip_property(results: list[tuple[Any, int, bytes]], started: list[Any],
                                          capacity: int | None, elapsed: float) -> None:
    batch = ResultBatch.build(results, started=started, capacity=capacity, elapsed=elapsed)
    decoded = round_trip(batch)
    assert isinstance(decoded, ResultBatch)
    assert decoded == batch
    assert [(i, k, bytes(p)) for i, k, p in decoded.results()] == results


@pytest.mark.parametrize("count", [0, 1, 500])
def test_result_batch_sizes(count: int) -> None:
    results = [(i, i % 3, b"r" * (i % 5)) for i in range(count)]
    decoded = round_trip(ResultBatch.build(results))
    assert len(decoded) == count
    assert [(i, k, bytes(p)) for i, k, p in decoded.results()] == results


def test_result_batch_large_payload_and_memoryviews() -> None:
    large = b"\xab" * (3 * 2**20)
    results = [(1, RESULT_OK, memoryview(large)), (2, RESULT_OK, memoryview(b"abcdef")[1:3]), (3, RESULT_OK, b"")]
    batch = ResultBatch.build(results)
    assert batch.sizes == [len(large), 2, 0]
    decoded = round_trip(batch)
    assert [bytes(p) for p in decoded.payloads()] == [large, b"bc", b""]


def test_result_batch_memoryview_payload_of_wider_items_keeps_every_byte() -> None:
    payload = memoryview(array.array("i", [1, 2, 3, 4]))
    batch = ResultBatch.build([(1, RESULT_OK, payload), (2, RESULT_OK, b"x")])
    assert [bytes(p) for p in round_trip(batch).payloads()] == [payload.tobytes(), b"x"]


def test_result_batch_build_columns() -> None:
    batch = ResultBatch.build([(1, RESULT_OK, b"a"), (2, RESULT_TASK_ERROR, b"bcd")], capacity=3)
    assert batch.task_ids == [1, 2]
    assert batch.kinds == [RESULT_OK, RESULT_TASK_ERROR]
    assert batch.sizes == [1, 3]
    assert bytes(batch.blob) == b"abcd"
    assert batch.capacity == 3
    assert batch.started == []
    assert len(batch) == 2


def test_result_batch_build_empty() -> None:
    batch = ResultBatch.build([])
    assert len(batch) == 0
    assert list(batch.results()) == []
    assert round_trip(batch) == batch


def test_result_batch_results_are_triples_with_views() -> None:
    batch = ResultBatch.build([("a", RESULT_OK, b"xy"), ("b", RESULT_REMOTE_ERROR, b"z")])
    results = list(batch.results())
    assert [(i, k) for i, k, _ in results] == [("a", RESULT_OK), ("b", RESULT_REMOTE_ERROR)]
    assert all(isinstance(p, memoryview) for _, _, p in results)
    assert [bytes(p) for _, _, p in results] == [b"xy", b"z"]


def test_result_batch_merge_concatenates_everything() -> None:
    first = ResultBatch.build([(1, RESULT_OK, b"a"), (2, RESULT_OK, b"bb")], started=[1, 2, 3], elapsed=0.5,
                              capacity=4)
    second = ResultBatch.build([(3, RESULT_TASK_ERROR, memoryview(b"ccc"))], started=[4], elapsed=0.25)
    empty = ResultBatch(started=[5])
    merged = ResultBatch.merge([first, empty, second])
    assert merged.task_ids == [1, 2, 3]
    assert merged.kinds == [RESULT_OK, RESULT_OK, RESULT_TASK_ERROR]
    assert merged.started == [1, 2, 3, 5, 4]
    assert merged.elapsed == pytest.approx(0.75)
    assert [(i, k, bytes(p)) for i, k, p in merged.results()] == [
        (1, RESULT_OK, b"a"), (2, RESULT_OK, b"bb"), (3, RESULT_TASK_ERROR, b"ccc")]
    assert round_trip(merged) == merged


def test_result_batch_merge_of_one_batch_is_that_batch() -> None:
    batch = ResultBatch.build([(1, RESULT_OK, b"a")], capacity=2)
    assert ResultBatch.merge([batch]) is batch


def test_result_batch_merge_sets_fields() -> None:
    batch = ResultBatch.build([(1, RESULT_OK, b"a")])
    merged = ResultBatch.merge([batch], capacity=9, started=["x"])
    assert merged is not batch
    assert merged.capacity == 9
    assert merged.started == ["x"]
    assert batch.capacity is None  # the input is left alone
    assert [(i, bytes(p)) for i, _, p in merged.results()] == [(1, b"a")]


def test_result_batch_merge_of_nothing_is_empty() -> None:
    merged = ResultBatch.merge([])
    assert len(merged) == 0
    assert bytes(merged.blob) == b""


@ROUND_TRIP
@given(st.lists(results_strategy, max_size=5))
def test_result_batch_merge_property(groups: list[list[tuple[Any, int, bytes]]]) -> None:
    merged = ResultBatch.merge([ResultBatch.build(g) for g in groups])
    flat = [r for g in groups for r in g]
    assert [(i, k, bytes(p)) for i, k, p in merged.results()] == flat
    assert [(i, k, bytes(p)) for i, k, p in round_trip(merged).results()] == flat


# --- size-bounded batches ------------------------------------------------------------------------


def test_batches_of_nothing_is_nothing() -> None:
    assert list(batches_of([])) == []


def test_batches_of_respects_the_task_limit() -> None:
    tasks = [Task(i, "f", b"") for i in range(MAX_BATCH_TASKS * 2 + 1)]
    groups = list(batches_of(tasks))
    assert [len(g) for g in groups] == [MAX_BATCH_TASKS, MAX_BATCH_TASKS, 1]
    assert [t for g in groups for t in g] == tasks


def test_batches_of_respects_the_byte_limit() -> None:
    half = b"x" * (MAX_BATCH_BYTES // 2)
    tasks = [Task(0, "f", half), Task(1, "f", half), Task(2, "f", b"y"), Task(3, "f", b"z")]
    assert [[t.task_id for t in g] for g in batches_of(tasks)] == [[0, 1], [2, 3]]


def test_batches_of_sends_an_oversized_task_alone() -> None:
    huge = b"x" * (MAX_BATCH_BYTES + 1)
    tasks = [Task(0, "f", b"a"), Task(1, "f", huge), Task(2, "f", b"b")]
    assert [[t.task_id for t in g] for g in batches_of(tasks)] == [[0], [1], [2]]


@ROUND_TRIP
@given(st.lists(st.integers(0, 40), max_size=40), st.integers(1, 5), st.integers(1, 100))
def test_batches_of_property(lengths: list[int], max_tasks: int, max_bytes: int) -> None:
    tasks = [Task(i, "f", b"x" * n) for i, n in enumerate(lengths)]
    groups = list(batches_of(tasks, max_tasks=max_tasks, max_bytes=max_bytes))
    assert [t for g in groups for t in g] == tasks  # order kept, nothing lost or repeated
    for group in groups:
        assert 0 < len(group) <= max_tasks
        size = sum(len(t.payload) for t in group)
        assert size <= max_bytes or len(group) == 1
    for first, second in zip(groups, groups[1:]):  # a batch is only closed when the next task does not fit
        assert len(first) == max_tasks or sum(len(t.payload) for t in first) + len(second[0].payload) > max_bytes


def test_merge_within_of_nothing_is_nothing() -> None:
    assert ResultBatch.merge_within([]) == []


def test_merge_within_merges_small_batches_into_one() -> None:
    batches = [ResultBatch.build([(i, RESULT_OK, b"r%d" % i)], elapsed=0.5) for i in range(5)]
    [merged] = ResultBatch.merge_within(batches)
    assert merged.task_ids == [0, 1, 2, 3, 4]
    assert merged.elapsed == pytest.approx(2.5)


def test_merge_within_splits_by_bytes() -> None:
    third = b"x" * (MAX_BATCH_BYTES // 3)
    batches = [ResultBatch.build([(i, RESULT_OK, third)]) for i in range(7)]
    merged = ResultBatch.merge_within(batches)
    assert [b.task_ids for b in merged] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(len(b.blob) <= MAX_BATCH_BYTES for b in merged)


def test_merge_within_keeps_an_oversized_batch_whole() -> None:
    huge = ResultBatch.build([(1, RESULT_OK, b"x" * (MAX_BATCH_BYTES + 1))])
    small = ResultBatch.build([(2, RESULT_OK, b"y")])
    merged = ResultBatch.merge_within([small, huge, small])
    assert [b.task_ids for b in merged] == [[2], [1], [2]]


@ROUND_TRIP
@given(st.lists(st.lists(st.integers(0, 30), max_size=4), max_size=12), st.integers(1, 80))
def test_merge_within_property(groups: list[list[int]], max_bytes: int) -> None:
    counter = iter(range(10**6))
    batches = [ResultBatch.build([(next(counter), RESULT_OK, b"x" * n) for n in g]) for g in groups]
    merged = ResultBatch.merge_within(batches, max_bytes=max_bytes)
    assert [i for b in merged for i in b.task_ids] == [i for b in batches for i in b.task_ids]
    assert [bytes(p) for b in merged for p in b.payloads()] == [bytes(p) for b in batches for p in b.payloads()]
    assert len(merged) <= max(1, len(batches))
    for batch in merged:
        assert len(batch.blob) <= max_bytes or batch in batches  # only a single input may exceed the limit


# --- malformed input: explicit cases ---------------------------------------------------------


def test_empty_message_is_rejected() -> None:
    with pytest.raises(ProtocolError):
        decode([])


@pytest.mark.parametrize("header", [b"", b"\xc1", b"\x91", b"not msgpack at all \xff\xfe", b"\x81\xa1v"])
def test_header_that_is_not_msgpack_is_rejected(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode([header])


@pytest.mark.parametrize("value", [1, "heartbeat", [1, 2], None, b"\x80", 1.5, True])
def test_header_that_is_not_a_map_is_rejected(value: Any) -> None:
    with pytest.raises(ProtocolError):
        decode([msgpack.packb(value)])


def test_trailing_bytes_after_header_are_rejected() -> None:
    header = bytes(encode(Heartbeat())[0])
    with pytest.raises(ProtocolError):
        decode([header + msgpack.packb(1)])


@pytest.mark.parametrize("version", [0, 2, PROTOCOL_VERSION + 1, -1, "1", None, [1], {"v": 1}, ...])
def test_wrong_or_missing_version_is_rejected(version: Any) -> None:
    frames = with_header(encode(Heartbeat()), v=version)
    with pytest.raises(ProtocolError, match="version"):
        decode(frames)


@pytest.mark.parametrize("tag", ["nonsense", "", "Heartbeat", 1, None, b"heartbeat", 2.5, ...])
def test_unknown_tag_is_rejected(tag: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(with_header(encode(Heartbeat()), t=tag))


@pytest.mark.parametrize("tag", [["heartbeat"], {"a": 1}, []], ids=["list", "map", "empty-list"])
def test_unhashable_tag_is_rejected_with_protocol_error(tag: Any) -> None:
    """A msgpack array or map as the tag must be a ProtocolError, not a TypeError."""
    with pytest.raises(ProtocolError):
        decode(with_header(encode(Heartbeat()), t=tag))


@pytest.mark.parametrize("message", [m for m in EXAMPLES if len(encode(m)) == 1], ids=example_id)
def test_extra_frames_on_a_header_only_message_are_rejected(message: Message) -> None:
    with pytest.raises(ProtocolError):
        decode([*received(encode(message)), b"stray"])


@pytest.mark.parametrize("message", EXAMPLES, ids=example_id)
def test_missing_or_extra_frames_are_rejected(message: Message) -> None:
    frames = received(encode(message))
    for bad in (frames[:-1], [*frames, b"x"], [*frames, b""]):
        with pytest.raises(ProtocolError):
            decode(bad)


@pytest.mark.parametrize(
    ("message", "field"),
    [(REGISTRATION, "manager_id"), (REGISTRATION, "capacity"), (RegistrationReply(accepted=True), "accepted"),
     (WorkerReady(worker_id="w", pid=1), "pid"), (StatusRequest(request_id=1), "request_id"),
     (CancelTasks(task_ids=[1]), "task_ids"), (ResultsAck(task_ids=[1]), "task_ids"),
     (ManagerCommand(request_id=1, action="hold", manager_id="m"),
                                               "action")],
)
def test_missing_required_field_is_rejected(message: Message, field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        decode(with_header(encode(message), **{field: ...}))


def test_missing_optional_field_takes_its_default() -> None:
    frames = with_header(encode(dataclasses.replace(REGISTRATION, block_id="b")), block_id=...)
    assert decode(frames) == dataclasses.replace(REGISTRATION, block_id=None)
    assert decode(with_header(encode(Shutdown(reason="x")), reason=...)) == Shutdown()


@pytest.mark.parametrize(
    ("message", "field", "value"),
    [
        (REGISTRATION, "manager_id", 5),
        (REGISTRATION, "manager_id", None),
        (REGISTRATION, "pid", "42"),
        (REGISTRATION, "pid", 4.2),
        (REGISTRATION, "accelerators", "0,1"),
        (REGISTRATION, "block_id", 3),
        (RegistrationReply(accepted=True), "accepted", "yes"),
        (RegistrationReply(accepted=True), "heartbeat_period", "2"),
        (Shutdown(), "reason", b"bytes are not text"),
        (StatusReport(request_id=1, managers=[], queued_tasks=0, outstanding_tasks=0), "managers", {}),
        (CancelTasks(task_ids=[]), "task_ids", 1),
        (ResultsAck(task_ids=[]), "task_ids", "task-1"),
        (ResultsAck(task_ids=[]), "task_ids", [["nested"]]),
        (ResultsAck(task_ids=[]), "task_ids", [{"a": 1}]),
        (ResultsAck(task_ids=[]), "task_ids", [1.5]),
        (CommandReply(request_id=1, ok=True), "ok", None),
    ],
)
def test_field_of_wrong_type_is_rejected(message: Message, field: str, value: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(with_header(encode(message), **{field: value}))


def test_float_fields_accept_integers() -> None:
    decoded = decode(with_header(encode(RegistrationReply(accepted=True)), heartbeat_period=3))
    assert decoded == RegistrationReply(accepted=True, heartbeat_period=3)


TASKS = TaskBatch([Task(1, "f", b"ab"), Task(2, "g", b"cde", 1.0, 1, 2)])
RESULTS = ResultBatch.build([(1, RESULT_OK, b"ab"), (2, RESULT_REMOTE_ERROR, b"cde")], started=[1], capacity=4)


@pytest.mark.parametrize(
    "changes",
    [
        {"ids": ...}, {"fns": ...}, {"sizes": ...}, {"walltimes": ...}, {"retries": ...}, {"priorities": ...},
        {"ids": 1}, {"ids": [1]}, {"fns": ["f", 2]}, {"fns": "fg"}, {"sizes": [2]}, {"sizes": [2, 2]},
        {"sizes": [3, 3]}, {"sizes": [6, -1]}, {"sizes": [-1, 6]}, {"sizes": [2, "3"]}, {"sizes": ["2", "3"]},
        {"sizes": [2.0, 3.0]}, {"sizes": [None, None]}, {"sizes": [2, [3]]}, {"retries": [0, "1"]},
        {"retries": [0, 1.5]}, {"priorities": [0, None]}, {"walltimes": [None, "1"]}, {"walltimes": [None, [1]]},
    ],
    ids=repr,
)
def test_malformed_task_batch_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode(with_header(encode(TASKS), **changes))


@pytest.mark.parametrize("blob", [b"", b"abcd", b"abcdef", b"abcde" * 2])
def test_task_batch_payload_frame_not_matching_sizes_is_rejected(blob: bytes) -> None:
    frames = received(encode(TASKS))
    with pytest.raises(ProtocolError):
        decode([frames[0], blob])


@pytest.mark.parametrize(
    "changes",
    [
        {"ids": ...}, {"kinds": ...}, {"sizes": ...}, {"ids": "12"}, {"kinds": [0]}, {"sizes": [5]},
        {"sizes": [2, 2]}, {"sizes": [6, -1]}, {"sizes": [-1, 6]}, {"sizes": [2.0, 3.0]}, {"sizes": [2, None]},
        {"kinds": [0, 7]}, {"kinds": [0, -1]}, {"kinds": [0, "ok"]}, {"started": 1}, {"started": None},
        {"capacity": "4"}, {"capacity": 4.5}, {"elapsed": "0.1"}, {"elapsed": None}, {"elapsed": [0.1]},
    ],
    ids=repr,
)
def test_malformed_result_batch_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode(with_header(encode(RESULTS), **changes))


def test_result_batch_optional_fields_take_defaults() -> None:
    decoded = decode(with_header(encode(RESULTS), started=..., capacity=..., elapsed=...))
    assert decoded == dataclasses.replace(RESULTS, started=[], capacity=None, elapsed=0.0)


@pytest.mark.parametrize("blob", [b"", b"abcd", b"abcdef"])
def test_result_batch_payload_frame_not_matching_sizes_is_rejected(blob: bytes) -> None:
    frames = received(encode(RESULTS))
    with pytest.raises(ProtocolError):
        decode([frames[0], blob])


@pytest.mark.parametrize("message", [TASKS, RESULTS], ids=example_id)
@pytest.mark.parametrize("task_id", [[1, 2], {"a": 1}, []], ids=["list", "map", "empty-list"])
def test_task_ids_that_are_not_scalars_are_rejected(message: Message, task_id: Any) -> None:
    """Task ids are "opaque msgpack scalars"; an array or map id would crash every dict keyed by id."""
    frames = encode(message)
    ids = header_of(frames)["ids"]
    with pytest.raises(ProtocolError):
        decode(with_header(frames, ids=[task_id, *ids[1:]]))


def test_started_ids_that_are_not_scalars_are_rejected() -> None:
    with pytest.raises(ProtocolError):
        decode(with_header(encode(RESULTS), started=[[1]]))


@pytest.mark.parametrize(
    "changes",
    [{"function_ids": ...}, {"function_ids": "f1"}, {"function_ids": ["f1", 2]}, {"function_ids": ["f1"]},
     {"function_ids": ["f1", "f2", "f3"]}],
    ids=repr,
)
def test_malformed_function_definitions_are_rejected(changes: dict[str, Any]) -> None:
    frames = encode(FunctionDefinitions(function_ids=["f1", "f2"], bodies=[b"a", b"b"]))
    with pytest.raises(ProtocolError):
        decode(with_header(frames, **changes))


@pytest.mark.parametrize("frame", [None, 5, "text"], ids=repr)
def test_frames_that_are_not_bytes_are_rejected(frame: Any) -> None:
    with pytest.raises(ProtocolError):
        decode([frame])
    with pytest.raises(ProtocolError):
        decode([received(encode(TASKS))[0], frame])
    with pytest.raises(ProtocolError):
        decode([received(encode(RESULTS))[0], frame])


# --- malformed input: properties -------------------------------------------------------------

msgpack_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.binary(max_size=12)
)
msgpack_keys = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(msgpack_keys, children, max_size=4),
    max_leaves=12,
)
TAGS = sorted(protocol._REGISTRY)
FIELD_NAMES = sorted({
    name for cls in protocol._REGISTRY.values() for name, _, _ in cls._checks
} | {"ids", "fns", "sizes", "walltimes", "retries", "priorities", "kinds", "function_ids"})
frames_tail = st.lists(st.binary(max_size=16), max_size=3)


def field_maps(tags: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[Any, Any]]:
    """Headers with a valid version, a tag from ``tags`` and random values for known field names."""
    return st.builds(
        lambda fields, extra, tag: {**extra, **fields, "v": PROTOCOL_VERSION, "t": tag},
        st.dictionaries(st.sampled_from(FIELD_NAMES), msgpack_values, max_size=8),
        st.dictionaries(msgpack_keys, msgpack_values, max_size=3),
        tags,
    )


def check_reencodes(message: Message | None) -> None:
    """A message the decoder accepted encodes again to an equal message."""
    if message is not None:
        assert round_trip(message) == message


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_bytes_frames_raise_only_protocol_error(frames: list[bytes]) -> None:
    decode_or_reject(frames)


@FUZZ
@given(st.dictionaries(msgpack_keys, msgpack_values, max_size=6), frames_tail)
def test_random_msgpack_maps_raise_only_protocol_error(header: dict[Any, Any], tail: list[bytes]) -> None:
    decode_or_reject([msgpack.packb(header, use_bin_type=True), *tail])


@FUZZ
@given(field_maps(st.sampled_from(TAGS) | msgpack_values), frames_tail)
def test_random_maps_with_version_raise_only_protocol_error(header: dict[Any, Any], tail: list[bytes]) -> None:
    """Any tag value at all (including arrays and maps) with random fields."""
    decode_or_reject([msgpack.packb(header, use_bin_type=True), *tail])


@FUZZ
@given(field_maps(st.sampled_from(TAGS)), frames_tail)
def test_random_fields_for_known_tags_raise_only_protocol_error(header: dict[Any, Any],
                                                                tail: list[bytes]) -> None:
    check_reencodes(decode_or_reject([msgpack.packb(header, use_bin_type=True), *tail]))


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_valid_frames_raise_only_protocol_error(message: Message, data: st.DataObject) -> None:
    frames = received(encode(message))
    index = data.draw(st.integers(0, len(frames) - 1), label="frame")
    frame = bytearray(frames[index])
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        operation = data.draw(st.sampled_from(["flip", "insert", "delete"]), label="operation")
        position = data.draw(st.integers(0, len(frame)), label="position")
        if operation == "insert":
            frame.insert(position, data.draw(st.integers(0, 255), label="byte"))
        elif frame and position < len(frame):
            if operation == "flip":
                frame[position] = data.draw(st.integers(0, 255), label="byte")
            else:
                del frame[position]
    frames[index] = bytes(frame)
    decode_or_reject(frames)


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_truncated_header_is_always_rejected(message: Message, data: st.DataObject) -> None:
    frames = received(encode(message))
    cut = data.draw(st.integers(0, len(frames[0]) - 1), label="cut")
    with pytest.raises(ProtocolError):
        decode([frames[0][:cut], *frames[1:]])


@FUZZ
@given(st.sampled_from([m for m in EXAMPLES if isinstance(m, (TaskBatch, ResultBatch)) and encode(m)[1]]),
       st.data())
def test_truncated_or_padded_payload_frame_is_always_rejected(message: Message, data: st.DataObject) -> None:
    header, blob = received(encode(message))
    if data.draw(st.booleans(), label="pad"):
        blob = blob + data.draw(st.binary(min_size=1, max_size=8), label="padding")
    else:
        blob = blob[:data.draw(st.integers(0, len(blob) - 1), label="cut")]
    with pytest.raises(ProtocolError):
        decode([header, blob])


@FUZZ
@given(st.sampled_from(EXAMPLES), st.sampled_from(FIELD_NAMES), msgpack_values)
def test_one_field_replaced_by_anything_raises_only_protocol_error(message: Message, field: str,
                                                                    value: Any) -> None:
    check_reencodes(decode_or_reject(with_header(encode(message), **{field: value})))


# -- bounds on what a peer reports ---------------------------------------------------------
def _registration(**fields: Any) -> list[bytes]:
    header = {"v": PROTOCOL_VERSION, "t": "register_interchange", "endpoint_id": "e", "hostname": "node1",
              "pid": 42, "manager_address": "tcp://127.0.0.1:1", **fields}
    return [msgpack.packb(header, use_bin_type=True)]


@pytest.mark.parametrize(("fields", "refusal"), [
    ({"pid": 2**64 - 1}, "'pid' is out of range"),
    ({"pid": -1}, "'pid' is out of range"),
    ({"hostname": "h" * 256}, "'hostname' has 256 characters, more than 255"),
    ({"hostname": "h" * 1_000_000}, "more than 255"),
    ({"manager_address": "x" * 5000}, "'manager_address' has 5000 characters"),
    ({"protocol_version": 2**63}, "'protocol_version' is out of range"),
])
def test_fields_out_of_bounds_are_refused(fields: dict[str, Any], refusal: str) -> None:
    with pytest.raises(ProtocolError, match=refusal) as caught:
        protocol.decode(_registration(**fields))
    assert len(str(caught.value)) < 200


def test_every_string_field_is_bounded_and_every_integer_is_64_bit() -> None:
    shutdown = [msgpack.packb({"v": PROTOCOL_VERSION, "t": "shutdown", "reason": "r" * 5000}, use_bin_type=True)]
    with pytest.raises(ProtocolError, match="'reason' has 5000 characters, more than 4096"):
        protocol.decode(shutdown)
    reply = [msgpack.packb({"v": PROTOCOL_VERSION, "t": "command_reply", "request_id": 2**63, "ok": True},
                           use_bin_type=True)]
    with pytest.raises(ProtocolError, match="'request_id' is out of range"):
        protocol.decode(reply)
    assert protocol.decode(_registration(hostname="h" * 255, pid=2**32 - 1)).hostname == "h" * 255  # type: ignore[attr-defined]


@pytest.mark.parametrize("header", [{"v": "x" * 100_000, "t": "heartbeat"}, {"v": PROTOCOL_VERSION, "t": "t" * 100_000},
                                    {"v": PROTOCOL_VERSION, "t": "registration_reply", "accepted": "\n" * 100_000}])
def test_refusals_never_quote_much_of_what_was_sent(header: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode([msgpack.packb(header, use_bin_type=True)])
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)
