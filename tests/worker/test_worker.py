"""Integration tests of the worker: real ``python -m worker`` processes on a socketpair.

The test process plays the manager: it makes the pair with ``fabric.streams.stream_pair``,
hands the child end to the worker (``pass_fds``), passes its own pid as ``--manager-pid``
and speaks ``fabric.protocol`` on its end. Every wait goes through ``poll_until``, bounded
by ``TIMEOUT`` (the one time constant; it never asserts how fast anything is). The
``start_worker`` fixture kills whatever a test leaves running and checks nothing is left.
"""

from __future__ import annotations

import functools
import contextlib
import dataclasses
import os
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import psutil
import pytest
import worker_functions
from worker_functions import TaskFailed

from fabric import protocol
from fabric.control import WorkerControl
from fabric.errors import PayloadTooLarge, SerializationError
from fabric.process import child_environment
from fabric.protocol import (PROTOCOL_VERSION, RESULT_OK, RESULT_REMOTE_ERROR, FunctionDefinitions, Heartbeat, Message,
                             ResultBatch, Shutdown, Task, TaskBatch, WorkerReady)
from fabric.serialize import deserialize, serialize_arguments, serialize_function
from fabric.streams import MAX_FRAMES, MessageStream, stream_pair
from worker.worker import FLUSH_INTERVAL
from tests import support

TIMEOUT = 10.0
"""Seconds any wait in this module may take before the test fails."""
poll_until = functools.partial(support.poll_until, timeout=TIMEOUT)
"""``tests.support.poll_until`` bounded by this module's ``TIMEOUT``."""

HERE = Path(__file__).resolve().parent
MAX_RESULT_BYTES = 10_000

T = TypeVar("T")
Result = tuple[Any, int, bytes]


def alive(process: psutil.Process) -> bool:
    """True while ``process`` runs and is not a zombie (an orphan nobody reaps counts as gone)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_environment() -> dict[str, str]:
    """Our environment, with this directory importable so ``worker_functions`` loads."""
    env = child_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
    return env


@dataclasses.dataclass
class RunningWorker:
    """A worker process and the manager's end of its stream."""

    worker_id: str
    process: subprocess.Popen[bytes]
    stream: MessageStream
    stderr_path: Path
    pending: deque[Message] = dataclasses.field(default_factory=deque)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def poll(self, condition: Callable[[], T], what: str) -> T:
        try:
            return poll_until(condition, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker stderr:\n{self.stderr()}") from None

    def _pump(self) -> None:
        """Write what is queued for the worker, decode what it sent."""
        self.stream.flush()
        self.pending.extend(protocol.decode(frames) for frames in self.stream.receive())

    def send(self, *messages: Message) -> None:
        for message in messages:
            self.send_frames(protocol.encode(message))

    def send_frames(self, frames: Sequence[bytes | memoryview]) -> None:
        self.stream.send(frames)

        def sent() -> bool:
            self._pump()
            return not self.stream.wants_write

        self.poll(sent, "the worker to take our message")

    def next_message(self) -> Message:
        def arrived() -> bool:
            self._pump()
            return bool(self.pending) or self.stream.closed

        self.poll(arrived, f"a message from worker {self.worker_id}")
        if not self.pending:
            raise AssertionError(f"worker {self.worker_id} closed its stream (exit code "
                                 f"{self.process.poll()}); stderr:\n{self.stderr()}")
        return self.pending.popleft()

    def results(self, count: int) -> tuple[list[ResultBatch], list[Result]]:
        """The next ``count`` results and the batches they came in."""
        batches: list[ResultBatch] = []
        results: list[Result] = []
        while len(results) < count:
            message = self.next_message()
            assert isinstance(message, ResultBatch), message
            batches.append(message)
            results.extend((task_id, kind, bytes(payload)) for task_id, kind, payload in message.results())
        assert len(results) == count, "the worker sent more results than tasks"
        return batches, results

    def run(self, *tasks: Task) -> list[Result]:
        self.send(TaskBatch(tasks=list(tasks)))
        return self.results(len(tasks))[1]

    def define(self, *functions: Callable[..., Any]) -> list[str]:
        ids, bodies = zip(*(serialize_function(fn) for fn in functions))
        self.send(FunctionDefinitions(function_ids=list(ids), bodies=list(bodies)))
        return list(ids)

    def wait_exit(self) -> int:
        self.poll(lambda: self.process.poll() is not None, f"worker {self.worker_id} to exit")
        return self.process.returncode

    def wait_closed(self) -> list[Message]:
        """Messages until EOF on the stream (the worker and every copy of its end are gone)."""
        def closed() -> bool:
            self._pump()
            return self.stream.closed

        self.poll(closed, f"worker {self.worker_id} to close its stream")
        leftovers = list(self.pending)
        self.pending.clear()
        return leftovers


StartWorker = Callable[..., RunningWorker]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """``start_worker(cpus=..., manager_pid=..., ready=True)``: a worker process, its
    ``WorkerReady`` already checked when ``ready``; killed after the test if still running."""
    started: list[RunningWorker] = []

    def start(*, cpus: str | None = None, manager_pid: int | None = None,
              max_result_bytes: int = MAX_RESULT_BYTES, ready: bool = True,
              control: WorkerControl | None = None, index: int = 0) -> RunningWorker:
        worker_id = f"worker-{len(started)}"
        ours, theirs = stream_pair()
        command = [sys.executable, "-m", "worker", "--id", worker_id, "--fd", str(theirs.fileno()),
                   "--manager-pid", str(os.getpid() if manager_pid is None else manager_pid),
                   "--max-result-bytes", str(max_result_bytes)]
        if cpus is not None:
            command += ["--cpus", cpus]
        shared = (theirs.fileno(),)
        if control is not None:
            command += ["--control-fd", str(control.fd), "--index", str(index)]
            shared += (control.fd,)
        stderr_path = tmp_path / f"{worker_id}.stderr"
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(command, pass_fds=shared, stdin=subprocess.DEVNULL,
                                       stderr=stderr, env=worker_environment())
        theirs.close()  # the worker's copy is its only one: its exit means EOF here
        running = RunningWorker(worker_id, process, MessageStream(ours), stderr_path)
        started.append(running)
        if ready:
            message = running.next_message()
            assert message == WorkerReady(worker_id=worker_id, pid=process.pid)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
        running.process.wait(TIMEOUT)
        running.stream.close()
    leftovers = [p for p in psutil.Process().children(recursive=True) if alive(p)]
    assert not leftovers, f"processes left behind: {leftovers}"


def task(task_id: Any, function_id: str, *args: Any, **kwargs: Any) -> Task:
    return Task(task_id, function_id, serialize_arguments(args, kwargs))


def remote_error(result: Result) -> dict[str, Any]:
    """The decoded RESULT_REMOTE_ERROR payload of ``result``."""
    task_id, kind, payload = result
    assert kind == RESULT_REMOTE_ERROR, f"task {task_id} did not fail: {deserialize(payload)!r}"
    error = msgpack.unpackb(payload, raw=False)
    assert error["task_id"] == task_id
    return error


def value(result: Result) -> Any:
    task_id, kind, payload = result
    assert kind == RESULT_OK, f"task {task_id} failed: {msgpack.unpackb(payload, raw=False)}"
    return deserialize(payload)


# -- start-up and tasks -------------------------------------------------------------------


def test_worker_says_ready_with_its_pid(start_worker: StartWorker) -> None:
    worker = start_worker(ready=False)
    ready = worker.next_message()
    assert isinstance(ready, WorkerReady)
    assert (ready.worker_id, ready.pid) == (worker.worker_id, worker.process.pid)


def test_many_tasks_return_correct_results_in_order(start_worker: StartWorker) -> None:
    worker = start_worker()
    [square] = worker.define(worker_functions.square)
    tasks = [task(task_id, square, 3 * task_id + 1) for task_id in range(2000)]
    worker.send(TaskBatch(tasks=tasks))
    _, results = worker.results(len(tasks))
    assert [task_id for task_id, _, _ in results] == list(range(2000))
    assert [value(r) for r in results] == [(3 * i + 1) ** 2 for i in range(2000)]


def test_functions_sent_by_value_run(start_worker: StartWorker) -> None:
    """A closure cannot be imported by the worker: dill sends its code."""
    worker = start_worker()
    offset = 7
    [add_offset] = worker.define(lambda x: x + offset)
    assert [value(r) for r in worker.run(task("a", add_offset, 1), task("b", add_offset, 2))] == [8, 9]


def test_chunks_and_definitions_accumulate(start_worker: StartWorker) -> None:
    worker = start_worker()
    [square] = worker.define(worker_functions.square)
    assert value(worker.run(task(1, square, 4))[0]) == 16
    [nap] = worker.define(worker_functions.nap)  # a later definition adds, the first stays
    assert [value(r) for r in worker.run(task(2, nap, 0, 5), task(3, square, 5))] == [5, 25]


def test_long_chunk_reports_in_several_batches(start_worker: StartWorker) -> None:
    """Tasks slower than FLUSH_INTERVAL are reported before the chunk is done."""
    worker = start_worker()
    [nap] = worker.define(worker_functions.nap)
    seconds = max(0.005, 2 * FLUSH_INTERVAL)
    worker.send(TaskBatch(tasks=[task(i, nap, seconds, i) for i in range(10)]))
    batches, results = worker.results(10)
    assert len(batches) > 1
    assert [value(r) for r in results] == list(range(10))


# -- failures inside tasks ----------------------------------------------------------------


def test_raising_function_returns_a_remote_error(start_worker: StartWorker) -> None:
    worker = start_worker()
    fail, square = worker.define(worker_functions.fail, worker_functions.square)
    failed, after = worker.run(task(1, fail, "boom 42"), task(2, square, 3))
    error = remote_error(failed)
    assert error["remote_type"] == "worker_functions.TaskFailed"
    assert error["message"] == "boom 42"
    assert "TaskFailed: boom 42" in error["traceback"]
    assert "in fail" in error["traceback"]  # the remote frames, not just the last line
    exception = deserialize(error["exception"])
    assert isinstance(exception, TaskFailed)
    assert exception.args == ("boom 42",)
    assert value(after) == 9  # the worker goes on with the chunk


def test_exception_that_cannot_be_printed_is_still_reported(start_worker: StartWorker) -> None:
    worker = start_worker()
    fail, square = worker.define(worker_functions.fail_unprintably, worker_functions.square)
    failed, after = worker.run(task(1, fail), task(2, square, 3))
    assert remote_error(failed)["remote_type"] == "worker_functions.UnprintableError"
    assert value(after) == 9


def test_unserializable_result_is_a_remote_serialization_error(start_worker: StartWorker) -> None:
    worker = start_worker()
    [make_generator] = worker.define(worker_functions.unserializable_result)
    error = remote_error(worker.run(task(1, make_generator))[0])
    assert error["remote_type"] == "fabric.errors.SerializationError"
    assert isinstance(deserialize(error["exception"]), SerializationError)


def test_result_over_max_result_bytes_is_payload_too_large(start_worker: StartWorker) -> None:
    worker = start_worker(max_result_bytes=MAX_RESULT_BYTES)
    [blob] = worker.define(worker_functions.blob)
    small, large = worker.run(task(1, blob, MAX_RESULT_BYTES // 2), task(2, blob, 2 * MAX_RESULT_BYTES))
    assert value(small) == b"x" * (MAX_RESULT_BYTES // 2)
    error = remote_error(large)
    assert error["remote_type"] == "fabric.errors.PayloadTooLarge"
    exception = deserialize(error["exception"])
    assert isinstance(exception, PayloadTooLarge)
    assert exception.limit == MAX_RESULT_BYTES
    assert exception.size > MAX_RESULT_BYTES


def test_task_for_a_function_never_sent_is_a_remote_serialization_error(start_worker: StartWorker) -> None:
    worker = start_worker()
    [square] = worker.define(worker_functions.square)
    unknown = "0" * 32
    missing, after = worker.run(task(1, unknown, 2), task(2, square, 2))
    error = remote_error(missing)
    assert error["remote_type"] == "fabric.errors.SerializationError"
    assert unknown in error["message"]
    assert value(after) == 4


def test_undecodable_function_or_arguments_are_remote_serialization_errors(start_worker: StartWorker) -> None:
    worker = start_worker()
    [square] = worker.define(worker_functions.square)
    broken = "f" * 32
    worker.send(FunctionDefinitions(function_ids=[broken], bodies=[b"\x03not dill at all"]))
    results = worker.run(task(1, broken, 2), Task(2, square, b"\xffnot a known strategy"), task(3, square, 5))
    assert [remote_error(r)["remote_type"] for r in results[:2]] == ["fabric.errors.SerializationError"] * 2
    assert value(results[2]) == 25


# -- messages that are not tasks ----------------------------------------------------------


def test_heartbeat_is_ignored(start_worker: StartWorker) -> None:
    worker = start_worker()
    [square] = worker.define(worker_functions.square)
    worker.send(Heartbeat())
    assert value(worker.run(task(1, square, 6))[0]) == 36


def _task_batch_with_short_payload() -> list[bytes | memoryview]:
    header, _ = protocol.encode(TaskBatch(tasks=[Task(1, "f" * 32, b"0123456789")]))
    return [header, b"short"]


@pytest.mark.parametrize("frames", [
    pytest.param([b"\xc1"], id="header is not msgpack"),
    pytest.param([msgpack.packb({"v": PROTOCOL_VERSION, "t": "no such message"})], id="unknown tag"),
    pytest.param([msgpack.packb({"v": PROTOCOL_VERSION + 1, "t": "tasks"})], id="other protocol version"),
    pytest.param(_task_batch_with_short_payload(), id="payload shorter than its sizes"),
    pytest.param([], id="no frames"),
    pytest.param(None, id="stream header with too many frames"),
])
def test_malformed_message_makes_the_worker_exit_with_protocol_error(
        start_worker: StartWorker, frames: list[bytes | memoryview] | None) -> None:
    """Pinned behaviour: the worker does not drop a malformed message from its manager and
    go on; it fails fast (non-zero exit, ProtocolError on stderr, EOF on the stream), so
    the manager sees a lost worker and never waits for an answer that cannot come."""
    worker = start_worker()
    if frames is None:
        worker.stream.sock.sendall(struct.pack("<I", MAX_FRAMES + 1))
    else:
        worker.send_frames(frames)
    assert worker.wait_closed() == []
    assert worker.wait_exit() != 0
    assert "ProtocolError" in worker.stderr()


# -- how a worker ends --------------------------------------------------------------------


def test_shutdown_after_tasks_returns_their_results_then_exits_zero(start_worker: StartWorker) -> None:
    worker = start_worker()
    [square] = worker.define(worker_functions.square)
    worker.send(TaskBatch(tasks=[task(i, square, i) for i in range(5)]), Shutdown(reason="test over"))
    assert [value(r) for r in worker.results(5)[1]] == [0, 1, 4, 9, 16]
    assert worker.wait_closed() == []
    assert worker.wait_exit() == 0


def test_the_stop_flag_ends_a_chunk_before_its_next_task_and_the_count_says_which_began(
        start_worker: StartWorker, tmp_path: Path) -> None:
    """Issue 12, item 14: a manager that leaves sets the flag its workers share; a worker
    finishes the task it is on, begins no other, sends what it has and exits; the count it
    kept tells its manager exactly which tasks never began."""
    control = WorkerControl.create(2)
    try:
        worker = start_worker(control=control, index=1)
        [log_then_wait, square] = worker.define(worker_functions.log_then_wait, worker_functions.square)
        worker.run(task(0, square, 3))
        assert control.began(1) == 1
        log, gate = tmp_path / "log", tmp_path / "gate"
        worker.send(TaskBatch(tasks=[task(i, log_then_wait, str(log), str(gate), i) for i in (1, 2, 3)]))
        worker.poll(lambda: log.exists(), "the first task of the chunk to begin")

        control.stop()
        gate.touch()

        assert [value(r) for r in worker.results(1)[1]] == [1]
        assert worker.wait_closed() == []
        assert worker.wait_exit() == 0
        assert log.read_text().split() == ["1"]
        assert control.began(1) == 2 and control.began(0) == 0
    finally:
        control.close()


def test_closing_the_stream_ends_the_worker(start_worker: StartWorker) -> None:
    worker = start_worker()
    worker.stream.close()
    assert worker.wait_exit() == 0


def test_worker_whose_manager_is_not_its_parent_exits_without_serving(start_worker: StartWorker) -> None:
    worker = start_worker(manager_pid=os.getppid(), ready=False)
    assert worker.wait_closed() == []  # no WorkerReady
    assert worker.wait_exit() == 0


MANAGER_SCRIPT = """
import os, subprocess, sys
fd = int(sys.argv[1])
subprocess.Popen([sys.executable, "-m", "worker", "--id", "orphan", "--fd", str(fd),
                  "--manager-pid", str(os.getpid())], pass_fds=(fd,))
sys.stdin.read()  # the test closes our stdin: exit, leaving the worker without its manager
"""


@pytest.fixture
def doomed_manager(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], MessageStream]]:
    """A stand-in manager process that starts one worker and exits when its stdin closes."""
    ours, theirs = stream_pair()
    with open(tmp_path / "manager.stderr", "wb") as stderr:
        manager = subprocess.Popen([sys.executable, "-c", MANAGER_SCRIPT, str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.PIPE, stderr=stderr,
                                   env=worker_environment())
    theirs.close()
    try:
        yield manager, MessageStream(ours)
    finally:
        if manager.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in psutil.Process(manager.pid).children(recursive=True):
                    child.kill()
            manager.kill()
        manager.wait(TIMEOUT)
        assert manager.stdin is not None
        manager.stdin.close()
        ours.close()


def test_worker_exits_when_its_manager_dies(
        doomed_manager: tuple[subprocess.Popen[bytes], MessageStream]) -> None:
    manager, stream = doomed_manager
    frames = poll_until(stream.receive, "WorkerReady from the orphan-to-be")
    ready = protocol.decode(frames[0])
    assert isinstance(ready, WorkerReady)
    worker = psutil.Process(ready.pid)
    try:
        assert worker.ppid() == manager.pid
        assert manager.stdin is not None
        manager.stdin.close()
        assert manager.wait(TIMEOUT) == 0
        poll_until(lambda: not alive(worker), "the worker to exit after its manager")
        poll_until(lambda: stream.receive() == [] and stream.closed, "EOF from the worker")
    finally:
        if alive(worker):
            worker.kill()


# -- CPU pinning ----------------------------------------------------------------------------


@pytest.mark.parametrize("cpus", ["0", "0,1"])
def test_cpus_pin_the_worker(start_worker: StartWorker, cpus: str) -> None:
    wanted = {int(cpu) for cpu in cpus.split(",")}
    if not wanted <= os.sched_getaffinity(0):
        pytest.skip(f"this process may not run on CPUs {cpus}")
    worker = start_worker(cpus=cpus)
    assert set(psutil.Process(worker.process.pid).cpu_affinity()) == wanted
    [affinity] = worker.define(worker_functions.affinity)
    assert value(worker.run(task(1, affinity))[0]) == wanted  # what user code sees
