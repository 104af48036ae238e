"""A real interchange process in service mode, and raw ZeroMQ peers on an interchange's manager
socket (a DEALER that speaks the protocol, or anything else, where managers connect)."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import zmq

from fabric import Endpoint, protocol
from fabric.config import InterchangeConfig
from fabric.process import child_environment
from fabric.protocol import PROTOCOL_VERSION, ManagerRegistration
from tests.support import TIMEOUT, poll_until
from tests.support.processes import alive

HEARTBEATS = {"heartbeat_period": 0.2, "heartbeat_threshold": 2.0}


class InterchangeProcess:
    """``python -m interchange`` in service mode for ``endpoint`` (its registration reply)."""

    def __init__(self, endpoint: dict[str, Any], spool: Path, log: Path, **settings: Any) -> None:
        self.spool = spool
        self.config = InterchangeConfig(
            upstream_address=endpoint["forwarder_address"], endpoint_id=endpoint["endpoint_id"],
            upstream_server_key=endpoint["server_public_key"], upstream_public_key=endpoint["public_key"],
            upstream_secret_key=endpoint["secret_key"], spool_dir=str(spool), exit_with_upstream=False,
            workers_per_manager=2, **{**HEARTBEATS, **settings})
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "interchange", "--config", self.config.to_json(), "--log-level", "INFO"],
            env=child_environment(), stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.psutil = psutil.Process(self.process.pid)

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, as an operator would; every process below it ends too."""
        below = self.psutil.children(recursive=True) if self.alive() else []
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        gone, alive = psutil.wait_procs(below, timeout=TIMEOUT)
        for process in alive:
            process.kill()
        assert not alive, f"processes outlived their interchange: {alive}"
        return self.process.returncode


def manager_address(endpoint: Endpoint) -> str:
    address = poll_until(lambda: endpoint.manager_address, "the interchange to register")
    interchange = psutil.Process(endpoint._process.pid)
    listening = [c.laddr for c in interchange.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    assert [f"tcp://{ip}:{port}" for ip, port in listening] == [address]
    return address


def dealer(context: zmq.Context, identity: bytes) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IDENTITY, identity)
    return socket


def connect(context: zmq.Context, address: str, identity: bytes) -> zmq.Socket:
    socket = dealer(context, identity)
    socket.connect(address)
    return socket


def receive(socket: zmq.Socket, endpoint: Endpoint) -> protocol.Message:
    """The interchange's next message to ``socket``; fails at once if the interchange died."""
    interchange = psutil.Process(endpoint._process.pid)
    poll_until(lambda: socket.poll(0) or not alive(interchange), "an answer from the interchange")
    assert alive(interchange), f"the interchange died (exit code {endpoint._process.poll()})"
    return protocol.decode(socket.recv_multipart())


def registration(manager_id: str, **fields) -> ManagerRegistration:
    values = dict(manager_id=manager_id, hostname=platform.node(), pid=os.getpid(), cores=1, memory=1,
                  accelerators=[], python_version=platform.python_version(), protocol_version=PROTOCOL_VERSION,
                  worker_count=1, prefetch=0, capacity=1)
    return ManagerRegistration(**{**values, **fields})
