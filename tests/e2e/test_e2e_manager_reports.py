"""End to end: what a peer on the interchange's manager socket reports reaches the
interchange's log escaped and bounded, never as a forged line. A raw ZeroMQ DEALER connects
where managers connect; the interchange's log (its stderr, inherited) is captured."""

from __future__ import annotations

from tests.support import TIMEOUT
from tests.support.interchange import connect, manager_address, receive, registration

from fabric.protocol import Heartbeat, ManagerExiting, Shutdown

FORGED = "2026-12-04 12:00:00,000 ERROR 1 interchange.interchange: forged"


def test_a_peers_identity_and_reasons_are_logged_escaped(make_endpoint, zmq_context, capfd) -> None:
    endpoint = make_endpoint(log_level="INFO")
    endpoint.wait_for_workers(timeout=TIMEOUT)
    intruder = connect(zmq_context, manager_address(endpoint), f"intruder\n{FORGED}".encode())
    intruder.send_multipart(Heartbeat().to_frames())  # logged: a message from an unregistered manager
    assert isinstance(receive(intruder, endpoint), Shutdown)
    liar = connect(zmq_context, manager_address(endpoint), b"liar")
    liar.send_multipart(registration("liar", hostname=f"node\n{FORGED}").to_frames())
    receive(liar, endpoint)
    liar.send_multipart(ManagerExiting(reason=f"done\n{FORGED}").to_frames())
    liar.send_multipart(Heartbeat().to_frames())
    assert isinstance(receive(liar, endpoint), Shutdown)  # it left: unknown again
    log = capfd.readouterr().err
    assert f"intruder\\n{FORGED}" in log and f"node\\n{FORGED}" in log and f"done\\n{FORGED}" in log, log[-3000:]
    assert not any(line.startswith(FORGED) for line in log.splitlines()), log[-3000:]  # was: three forged lines
