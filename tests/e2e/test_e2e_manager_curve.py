"""End to end: CurveZMQ between the interchange and its managers (``manager_curve``).

With it forced on, a local endpoint runs tasks as usual; its managers hold key pairs the
interchange made, in files only their user can read, and no secret key is on any command
line. Peers without one of those keys never get through the handshake (the socket
monitor reports the refusal, so nothing is waited for by the clock), and a peer holding a
real manager's key cannot register as another manager. On 127.0.0.1 it is off by default.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import e2e_functions as fns
import psutil
import pytest
import zmq
from tests.support import TIMEOUT, poll_until
from tests.support.interchange import (FAILED_HANDSHAKE, handshake, manager_address, manager_configs, receive,
                                       registration)

from fabric.config import InterchangeConfig, ProviderConfig, is_loopback
from fabric.errors import ConfigError
from fabric.protocol import RegistrationReply

def curve_dealer(context: zmq.Context, identity: bytes, server_key: str, public: bytes, secret: bytes) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.curve_serverkey = server_key.encode()
    socket.curve_publickey, socket.curve_secretkey = public, secret
    return socket


def test_tasks_run_over_curve_with_keys_in_private_files_only(make_endpoint) -> None:
    endpoint = make_endpoint(workers=2, managers=2, manager_curve=True)
    assert [f.result(TIMEOUT) for f in [endpoint.submit(fns.square, x) for x in range(200)]] == \
        [("square", x, x * x) for x in range(200)]
    configs = manager_configs(endpoint)
    assert len(configs) == 2 and len({c["curve_key_file"] for c in configs}) == 2
    folder = Path(configs[0]["curve_key_file"]).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for config in configs:
        path = Path(config["curve_key_file"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.getuid()
        secret = json.loads(path.read_text())["secret"]
        for process in [psutil.Process(config["pid"]), psutil.Process(endpoint._process.pid)]:
            assert secret not in " ".join(process.cmdline())
    endpoint.shutdown()
    poll_until(lambda: not folder.exists(), "the interchange to remove the managers' keys")


def test_peers_without_a_key_the_interchange_made_are_refused(make_endpoint, zmq_context) -> None:
    endpoint = make_endpoint(manager_curve=True)
    address = manager_address(endpoint)
    server_key = manager_configs(endpoint)[0]["curve_server_key"]
    plain = zmq_context.socket(zmq.DEALER)
    plain.setsockopt(zmq.LINGER, 0)
    assert handshake(plain, address) & FAILED_HANDSHAKE
    stranger = curve_dealer(zmq_context, b"stranger", server_key, *zmq.curve_keypair())
    assert handshake(stranger, address) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    with contextlib.suppress(zmq.Again):  # no session to queue it on (the usual case)
        stranger.send_multipart(registration("stranger").to_frames(), zmq.NOBLOCK)
    assert stranger.poll(0) == 0 and plain.poll(0) == 0  # no session: nothing can ever come back
    assert [f.result(TIMEOUT) for f in [endpoint.submit(fns.square, x) for x in range(20)]] == \
        [("square", x, x * x) for x in range(20)]


def test_a_managers_key_does_not_let_a_peer_register_as_another_manager(make_endpoint, zmq_context) -> None:
    endpoint = make_endpoint(manager_curve=True)
    address = manager_address(endpoint)
    config = manager_configs(endpoint)[0]
    keys = json.loads(Path(config["curve_key_file"]).read_text())
    impostor = curve_dealer(zmq_context, b"impostor", config["curve_server_key"], keys["public"].encode(),
                            keys["secret"].encode())
    assert handshake(impostor, address) == zmq.EVENT_HANDSHAKE_SUCCEEDED  # the key is a real one
    impostor.send_multipart(registration("impostor").to_frames())
    reply = receive(impostor, endpoint)
    assert isinstance(reply, RegistrationReply) and not reply.accepted and "another manager" in reply.reason
    assert [m["manager_id"] for m in endpoint.status().managers] == [config["manager_id"]]


def test_curve_is_off_by_default_on_the_loopback_interface(make_endpoint) -> None:
    endpoint = make_endpoint()
    assert not endpoint.config.manager_curve_enabled
    assert manager_configs(endpoint)[0]["curve_key_file"] is None
    assert endpoint.submit(fns.square, 3).result(TIMEOUT) == ("square", 3, 9)


def test_the_default_follows_the_manager_host() -> None:
    def config(**settings: Any) -> InterchangeConfig:
        return InterchangeConfig(upstream_address="tcp://127.0.0.1:1", endpoint_id="e", **settings)

    assert [is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost")] == [True] * 5
    assert [is_loopback(h) for h in ("0.0.0.0", "*", "10.1.2.3", "eth0", "login1.cluster")] == [False] * 5
    assert not config().manager_curve_enabled
    assert config(manager_host="0.0.0.0").manager_curve_enabled
    assert not config(manager_host="0.0.0.0", manager_curve=False).manager_curve_enabled
    assert config(manager_curve=True).manager_curve_enabled
    kubernetes = ProviderConfig(kind="kubernetes", image="python:3.11")
    assert not config(manager_host="0.0.0.0", provider=kubernetes).manager_curve_enabled
    with pytest.raises(ConfigError, match="kubernetes"):
        config(manager_curve=True, provider=kubernetes)
