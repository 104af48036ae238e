"""``fabric bench floor``: the bare 4-process ZeroMQ chain, timed beside the endpoint in one run.

The chain has our topology and none of our code, so its round trip is the floor a fabric
round trip is measured against (DESIGN.md, hot-path rules)::

    client DEALER --tcp--> broker ROUTER/ROUTER --tcp--> "manager" DEALER --socketpair--> worker

All on 127.0.0.1, plain pyzmq, 8 bytes each way, one message in flight. The broker routes
by identity frames the way the interchange does; the "manager" forwards each message to
its worker over a socketpair and the reply back. The same process also starts a real
``Endpoint`` (1 manager, ``--workers`` workers) and times sequential no-op round trips
through it. The two take turns, ``--samples`` round trips each, for ``--repeat`` rounds,
so a slow spell of the machine falls on both; ``ratio_median`` (endpoint median / chain
median) is taken within each round and reported with its spread over the rounds.

Prints ONE JSON line and writes ``record.json`` and ``report.md`` to the output directory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import record as records
from benchmarks.measure import BenchmarkError, latency_summary, machine_info

RECEIVE_TIMEOUT_MS = 30_000
"""The chain fails if any reply takes longer than this."""

_LENGTH = struct.Struct("<I")


def _exit_with_parent() -> None:
    from benchmarks.service import _exit_with_parent as preexec  # noqa: PLC0415

    in_child = preexec()
    if in_child is not None:
        in_child()


def _broker(ports: Any) -> None:
    """ROUTER (clients) <-> ROUTER (managers): forward by identity, like the interchange."""
    import zmq  # noqa: PLC0415

    _exit_with_parent()
    context = zmq.Context()
    front, back = context.socket(zmq.ROUTER), context.socket(zmq.ROUTER)
    ports.send((front.bind_to_random_port("tcp://127.0.0.1"), back.bind_to_random_port("tcp://127.0.0.1")))
    ports.close()
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    manager: bytes | None = None
    while True:
        ready = dict(poller.poll())
        if back in ready:
            frames = back.recv_multipart()
            if len(frames) == 1 or frames[1] == b"":  # the manager's hello (or a stray frame)
                manager = frames[0]
            else:
                front.send_multipart(frames[1:])  # [client, payload]
        if front in ready:
            client, payload = front.recv_multipart()
            if manager is not None:
                back.send_multipart([manager, client, payload])


def _manager(back_port: int, worker: socket.socket) -> None:
    """DEALER to the broker; each message to the worker over a socketpair and the reply back."""
    import zmq  # noqa: PLC0415

    _exit_with_parent()
    dealer = zmq.Context().socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{back_port}")
    dealer.send_multipart([b""])  # hello: the broker learns this manager's identity
    reader = worker.makefile("rb")
    while True:
        client, payload = dealer.recv_multipart()
        worker.sendall(_LENGTH.pack(len(payload)) + payload)
        (size,) = _LENGTH.unpack(reader.read(_LENGTH.size))
        dealer.send_multipart([client, reader.read(size)])


def _worker(connection: socket.socket) -> None:
    """Echo each length-prefixed message; exit at end of file (the manager is gone)."""
    _exit_with_parent()
    reader = connection.makefile("rb")
    while True:
        header = reader.read(_LENGTH.size)
        if len(header) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(header)
        connection.sendall(header + reader.read(size))


class Chain:
    """The bare chain: a broker, a manager and its worker in child processes; ``round_trip()`` from here."""

    def __init__(self) -> None:
        import zmq  # noqa: PLC0415

        spawn = multiprocessing.get_context("spawn")
        receiving, sending = spawn.Pipe(duplex=False)
        self._processes = [spawn.Process(target=_broker, args=(sending,), daemon=True, name="floor-broker")]
        self._processes[0].start()
        sending.close()
        if not receiving.poll(60):
            self.close()
            raise BenchmarkError("the chain's broker did not start within 60 s")
        front_port, back_port = receiving.recv()
        ours, theirs = socket.socketpair()
        self._processes += [spawn.Process(target=_manager, args=(back_port, ours), daemon=True, name="floor-manager"),
                            spawn.Process(target=_worker, args=(theirs,), daemon=True, name="floor-worker")]
        for process in self._processes[1:]:
            process.start()
        ours.close()
        theirs.close()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.RCVTIMEO, RECEIVE_TIMEOUT_MS)
        self._socket.connect(f"tcp://127.0.0.1:{front_port}")
        self._counter = 0
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the manager has said hello, the broker drops requests: retry one until it answers."""
        import zmq  # noqa: PLC0415

        self._socket.setsockopt(zmq.RCVTIMEO, 100)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._socket.send(b"ready")
            try:
                self._socket.recv()
            except zmq.Again:
                continue
            self._socket.setsockopt(zmq.RCVTIMEO, RECEIVE_TIMEOUT_MS)
            return
        raise BenchmarkError("the chain did not answer within 60 s")

    def round_trip(self) -> float:
        """Seconds of one round trip of 8 bytes; checks the echo."""
        self._counter += 1
        message = self._counter.to_bytes(8, "little")
        started = time.perf_counter()
        self._socket.send(message)
        reply = self._socket.recv()
        elapsed = time.perf_counter() - started
        if reply != message:
            raise BenchmarkError(f"the chain answered {reply!r} to {message!r}")
        return elapsed

    def close(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.join(10)
        if hasattr(self, "_socket"):
            self._socket.close(linger=0)
            self._context.term()


def _endpoint_round_trip(endpoint: Any, function: Any) -> float:
    started = time.perf_counter()
    value = endpoint.submit(function).result(RECEIVE_TIMEOUT_MS / 1000)
    elapsed = time.perf_counter() - started
    if value is not None:
        raise BenchmarkError(f"a no-op task returned {value!r}")
    return elapsed


def measure(samples: int, rounds: int, workers: int) -> dict[str, Any]:
    """``rounds`` rounds, each ``samples`` chain round trips then ``samples`` endpoint round trips."""
    from benchmarks import tasks  # noqa: PLC0415
    from fabric import Endpoint  # noqa: PLC0415

    chain = Chain()
    endpoint = Endpoint(workers=workers)
    try:
        endpoint.wait_for_workers()
        for _ in range(max(20, samples // 10)):  # warm-up of both
            chain.round_trip()
            _endpoint_round_trip(endpoint, tasks.noop)
        per_round: list[dict[str, Any]] = []
        for _ in range(rounds):
            floor = [chain.round_trip() for _ in range(samples)]
            ours = [_endpoint_round_trip(endpoint, tasks.noop) for _ in range(samples)]
            per_round.append({"floor_ms": latency_summary(floor), "endpoint_ms": latency_summary(ours)})
    finally:
        endpoint.shutdown(wait=False, cancel_futures=True)
        chain.close()
    for found in per_round:
        found["ratio_median"] = round(found["endpoint_ms"]["median"] / found["floor_ms"]["median"], 3)
        found["ratio_p99"] = round(found["endpoint_ms"]["p99"] / found["floor_ms"]["p99"], 3)
    return {"rounds": per_round, **{key: _spread([r[key] for r in per_round]) for key in ("ratio_median", "ratio_p99")},
            **{f"{side}_{stat}": _spread([r[f"{side}_ms"][stat] for r in per_round])
               for side in ("floor", "endpoint") for stat in ("median", "p99")}}


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": records.median(values), "min": min(values), "max": max(values)}


def run_section(options: argparse.Namespace, log: records.Log) -> dict[str, Any]:
    samples = 5 if options.quick else options.samples
    rounds = 1 if options.quick else options.repeat
    log(f"floor: {rounds} round(s) of {samples} round trips, bare chain then endpoint ({options.workers} workers)")
    found = measure(samples, rounds, options.workers)
    return {"benchmark": "floor", "config": {"samples": samples, "repeat": rounds, "workers": options.workers,
                                             "quick": options.quick},
            "machine": machine_info(), **found}


def report_lines(section: dict[str, Any]) -> list[str]:
    rows = [[str(i + 1), records.number(r["floor_ms"]["median"], 3), records.number(r["floor_ms"]["p99"], 3),
             records.number(r["endpoint_ms"]["median"], 3), records.number(r["endpoint_ms"]["p99"], 3),
             records.number(r["ratio_median"], 2), records.number(r["ratio_p99"], 2)]
            for i, r in enumerate(section["rounds"])]
    ratio = section["ratio_median"]
    return [f"## Round trip against the bare-chain floor ({section['config']['samples']} samples a side a round)", "",
            *records.table(["round", "chain median ms", "chain p99 ms", "endpoint median ms", "endpoint p99 ms",
                            "ratio median", "ratio p99"], rows), "",
            f"endpoint / chain median: {records.number(ratio['median'], 2)} "
            f"({records.number(ratio['min'], 2)}–{records.number(ratio['max'], 2)} over the rounds)"]


def execute(options: argparse.Namespace, prog: str) -> int:
    import json  # noqa: PLC0415

    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    record["sections"]["floor"] = section = run_section(options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    print(json.dumps(section), flush=True)
    records.log(f"{prog}: record written to {directory}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.floor") -> int:
    from benchmarks import cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog=prog, description=cli.DESCRIPTIONS["floor"])
    cli.add_floor_arguments(parser)
    return execute(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
