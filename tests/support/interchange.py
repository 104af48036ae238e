"""A real interchange process in service mode, and raw ZeroMQ peers on an interchange's manager
socket (a DEALER that speaks the protocol, or anything else, where managers connect)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import zmq
from zmq.utils.monitor import recv_monitor_message

from fabric import Endpoint, protocol
from fabric.config import InterchangeConfig
from fabric.process import child_environment
from fabric.protocol import PROTOCOL_VERSION, ManagerRegistration
from tests.support import TIMEOUT, poll_until
from tests.support.processes import alive, descendants, module_of

HEARTBEATS = {"heartbeat_period": 0.2, "heartbeat_threshold": 2.0}


class InterchangeProcess:
    """``python -m interchange`` in service mode for ``endpoint`` (its registration reply)."""

    def __init__(self, endpoint: dict[str, Any], spool: Path, log: Path, **settings: Any) -> None:
        self.spool = spool
        self.config = InterchangeConfig(
            upstream_address=endpoint["forwarder_address"], endpoint_id=endpoint["endpoint_id"],
            upstream_server_key=endpoint["server_public_key"], upstream_public_key=endpoint["public_key"],
            upstream_secret_key=endpoint["secret_key"], spool_dir=str(spool), exit_with_upstream=False,
            **{"workers_per_manager": 2, **HEARTBEATS, **settings})
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


FAILED_HANDSHAKE = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def manager_configs(endpoint: Endpoint) -> list[dict[str, Any]]:
    """The ``--config`` JSON on the command line of each of the endpoint's managers."""
    poll_until(lambda: endpoint.status().managers, "a manager to register")
    configs = []
    for process in descendants(endpoint._process.pid):
        if module_of(process) == "manager":
            command = process.cmdline()
            configs.append({"pid": process.pid, "cmdline": command,
                            **json.loads(command[command.index("--config") + 1])})
    return configs


def handshake(socket: zmq.Socket, address: str) -> int:
    """Connect ``socket`` to ``address``; the monitor event that ends its first handshake."""
    monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | FAILED_HANDSHAKE)
    try:
        socket.connect(address)
        poll_until(lambda: monitor.poll(0), "the handshake to end")
        return int(recv_monitor_message(monitor)["event"])
    finally:
        socket.disable_monitor()
        monitor.close()
