"""End to end: a local ``Endpoint`` whose managers connect over a non-loopback address.

The README's Slurm example needs managers on other nodes to reach the interchange: the
``Endpoint`` takes ``manager_host`` / ``manager_port`` like a configured endpoint. Here the
block's manager connects to an address of this machine's own network interface (traffic
stays on this machine), over CurveZMQ (on by default off the loopback interface), and a
peer without one of the interchange's keys is refused.
"""

from __future__ import annotations

import socket

import e2e_functions as fns
import psutil
import pytest
import zmq
from tests.support import TIMEOUT
from tests.support.interchange import handshake, manager_configs


def non_loopback_address() -> str | None:
    """An IPv4 address of an interface of this machine that is up and not loopback."""
    stats = psutil.net_if_stats()
    for name, addresses in psutil.net_if_addrs().items():
        if not stats.get(name) or not stats[name].isup:
            continue
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def test_a_block_s_manager_connects_over_a_non_loopback_address(make_endpoint, zmq_context) -> None:
    host = non_loopback_address()
    if host is None:
        pytest.skip("this machine has no network interface with a non-loopback IPv4 address")
    port = free_port(host)
    endpoint = make_endpoint(workers=1, manager_host=host, manager_port=port)
    assert [f.result(TIMEOUT) for f in [endpoint.submit(fns.square, x) for x in range(5)]] == [
        ("square", x, x * x) for x in range(5)]
    assert endpoint.manager_address == f"tcp://{host}:{port}"
    [config] = manager_configs(endpoint)
    assert config["interchange_address"] == f"tcp://{host}:{port}"
    assert config["curve_server_key"] and config["curve_key_file"]  # managers from other nodes authenticate
    connections = psutil.Process(config["pid"]).net_connections(kind="tcp")
    assert any(c.raddr and (c.raddr.ip, c.raddr.port) == (host, port) and c.status == psutil.CONN_ESTABLISHED
               for c in connections)

    stranger = zmq_context.socket(zmq.DEALER)
    stranger.setsockopt(zmq.LINGER, 0)
    assert handshake(stranger, f"tcp://{host}:{port}") != zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert endpoint.submit(fns.square, 7).result(TIMEOUT) == ("square", 7, 49)
