"""Unit tests for fabric.streams: multipart messages over a socketpair (no other sockets).

The wire format is the one in the module docstring of ``fabric.streams``, re-written here
(``encode``) independently of the code under test, so the tests can feed a stream bytes
split anywhere and check what ``send`` puts on the wire.

Waits are bounded by ``TIMEOUT``, the one time constant of this module: everything
happens in this process on a socketpair, so it only bounds how long a broken stream may
keep a test waiting (``poll_until``), or how long a ``send`` that never returns may spin
(``pytest.mark.timeout``); it never asserts how fast anything is.
"""

from __future__ import annotations

import functools
import array
import random
import socket
import struct
import threading
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric.errors import ProtocolError
from fabric.streams import MAX_FRAMES, READ_SIZE, MessageStream, stream_pair
from tests import support

TIMEOUT = 5.0
"""Seconds any wait in this module may take before the test fails."""
poll_until = functools.partial(support.poll_until, timeout=TIMEOUT)
"""``tests.support.poll_until`` bounded by this module's ``TIMEOUT``."""

Message = list[bytes]


def encode(frames: Sequence[bytes]) -> bytes:
    """One message in the documented wire format: u32 count, u32 lengths, the frames."""
    return struct.pack(f"<I{len(frames)}I", len(frames), *map(len, frames)) + b"".join(frames)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` raw bytes from a blocking socket (the peer of a MessageStream)."""
    sock.settimeout(TIMEOUT)
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(size - got)
        assert chunk, f"EOF after {got} of {size} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def exchange(sender: MessageStream, receiver: MessageStream, count: int) -> list[Message]:
    """Flush ``sender`` and read ``receiver`` (both non-blocking) until ``count`` messages came."""
    received: list[Message] = []

    def step() -> bool:
        received.extend(receiver.receive())
        sender.flush()
        return not sender.wants_write and len(received) >= count

    poll_until(step, f"{count} messages")
    return received


def receive_until_closed(receiver: MessageStream) -> list[Message]:
    """Every message until EOF (the writer must have closed its end)."""
    received: list[Message] = []

    def step() -> bool:
        received.extend(receiver.receive())
        return receiver.closed

    poll_until(step, "EOF")
    return received


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ends = stream_pair()
    yield ends
    for end in ends:
        end.close()


@pytest.fixture
def streams(pair: tuple[socket.socket, socket.socket]) -> tuple[MessageStream, MessageStream]:
    """A non-blocking (sender, receiver) pair."""
    return MessageStream(pair[0]), MessageStream(pair[1])


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [
    pytest.param([[]], id="no frames"),
    pytest.param([[b"hello"]], id="one frame"),
    pytest.param([[bytes([i % 256]) * i for i in range(1, 300)]], id="many frames"),
    pytest.param([[b"a", b"", b"", b"b"], [b"", b"c"]], id="empty frames before data"),
    pytest.param([[], [b"x"], [], [b"y", b"z"]], id="messages without frames between others"),
])
def test_messages_round_trip(streams: tuple[MessageStream, MessageStream], messages: list[Message]) -> None:
    sender, receiver = streams
    for message in messages:
        sender.send(message)
    assert exchange(sender, receiver, len(messages)) == messages


@pytest.mark.timeout(TIMEOUT)
def test_messages_ending_in_empty_frames_round_trip(streams: tuple[MessageStream, MessageStream]) -> None:
    """A trailing empty frame (an empty ``ResultBatch`` blob, say) must not wedge ``send``."""
    sender, receiver = streams
    messages = [[b""], [b"a", b""], [b"", b""]]
    for message in messages:
        sender.send(message)
    assert exchange(sender, receiver, len(messages)) == messages


def test_twenty_megabyte_frame_round_trips(streams: tuple[MessageStream, MessageStream]) -> None:
    sender, receiver = streams
    big = random.Random(20).randbytes(20 << 20)
    messages = [[b"before"], [b"head", big, b"tail"], [b"after"]]
    for message in messages:
        sender.send(message)
    received = exchange(sender, receiver, len(messages))
    assert [len(m) for m in received] == [1, 3, 1]
    assert received == messages  # the small message after it proves the buffer recovered


def test_back_to_back_small_messages_arrive_in_one_receive(
        streams: tuple[MessageStream, MessageStream]) -> None:
    sender, receiver = streams
    messages = [[b"%d" % i, b"x" * (1 + i % 7)] for i in range(1000)]
    for message in messages:
        sender.send(message)
    assert not sender.wants_write  # all of it is in the kernel now (a socketpair delivers on send)
    assert receiver.receive() == messages


def test_one_receive_reads_until_the_socket_is_empty(streams: tuple[MessageStream, MessageStream]) -> None:
    """More than one read buffer's worth already waiting comes back from one ``receive``."""
    sender, receiver = streams
    messages = [[b"%d" % i, bytes([i % 256]) * 10_000] for i in range(3 * READ_SIZE // 10_000)]
    for message in messages:
        sender.send(message)
    assert not sender.wants_write
    assert receiver.receive() == messages


def test_wire_format_is_the_documented_one(pair: tuple[socket.socket, socket.socket]) -> None:
    sender = MessageStream(pair[0])
    frames = [b"ab", b"", b"cde"]
    sender.send(frames)
    expected = encode(frames)
    assert expected == b"\x03\x00\x00\x00" b"\x02\x00\x00\x00" b"\x00\x00\x00\x00" b"\x03\x00\x00\x00" b"abcde"
    assert read_exactly(pair[1], len(expected)) == expected


# -- messages split across reads ------------------------------------------------------------


def feed(raw: bytes, cuts: Sequence[int], receiver: MessageStream, writer: socket.socket) -> list[Message]:
    """Write ``raw`` to ``writer`` in pieces ending at ``cuts``, receiving after each piece."""
    received: list[Message] = []
    start = 0
    for end in [*sorted(set(cuts)), len(raw)]:
        if end > start:
            writer.sendall(raw[start:end])
            received.extend(receiver.receive())
            start = end
    writer.close()
    return received + receive_until_closed(receiver)


frames_strategy = st.lists(st.binary(max_size=300), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(frames_strategy, min_size=1, max_size=8), blocking=st.booleans(), data=st.data())
def test_messages_split_anywhere_are_reassembled(messages: list[Message], blocking: bool,
                                                 data: st.DataObject) -> None:
    raw = b"".join(encode(m) for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=30), label="cuts")
    writer, reader = stream_pair()
    try:
        receiver = MessageStream(reader, blocking=blocking)
        assert feed(raw, cuts, receiver, writer) == messages
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("blocking", [False, True], ids=["non-blocking", "blocking"])
def test_message_written_one_byte_at_a_time(pair: tuple[socket.socket, socket.socket], blocking: bool) -> None:
    messages = [[b"first", b"", b"x" * 300], [], [b"second"]]
    raw = b"".join(encode(m) for m in messages)
    receiver = MessageStream(pair[1], blocking=blocking)
    assert feed(raw, range(len(raw)), receiver, pair[0]) == messages


def test_messages_straddling_the_read_buffer_are_reassembled(pair: tuple[socket.socket, socket.socket]) -> None:
    """Messages just under, across and far over ``READ_SIZE``, in odd-sized pieces, so the
    buffer is compacted with a message half read and grown while not at its start."""
    rng = random.Random(7)
    sizes = [100, READ_SIZE - 50, 3, 2 * READ_SIZE + 7, 1, READ_SIZE // 2, 5 * READ_SIZE, 9]
    messages = [[b"%d" % i, rng.randbytes(size)] for i, size in enumerate(sizes)]
    raw = b"".join(encode(m) for m in messages)
    cuts = range(0, len(raw), 65_537)
    assert feed(raw, cuts, MessageStream(pair[1]), pair[0]) == messages


# -- a full socket buffer -----------------------------------------------------------------


def test_send_into_a_full_socket_buffer_queues_until_the_peer_reads(
        streams: tuple[MessageStream, MessageStream], pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = streams
    kernel_room = (pair[0].getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                   + pair[1].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    big = random.Random(1).randbytes(kernel_room + READ_SIZE)
    sender.send([b"big", big])
    assert sender.wants_write  # the socket could not take it all: the rest is queued
    sender.send([b"small"])  # queued behind the big one, order kept
    sender.flush()
    assert sender.wants_write  # nobody read: still nothing more fits
    assert exchange(sender, receiver, 2) == [[b"big", big], [b"small"]]
    assert not sender.wants_write


# -- EOF and malformed input --------------------------------------------------------------


def test_eof_sets_closed(streams: tuple[MessageStream, MessageStream],
                        pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = streams
    assert receiver.receive() == []
    assert not receiver.closed  # nothing yet is not EOF
    sender.send([b"last words"])
    pair[0].close()
    assert receive_until_closed(receiver) == [[b"last words"]]
    assert receiver.receive() == []
    assert receiver.closed


def test_eof_inside_a_message_drops_the_fragment(pair: tuple[socket.socket, socket.socket]) -> None:
    raw = encode([b"complete"]) + encode([b"cut short"])[:-3]
    pair[0].sendall(raw)
    pair[0].close()
    assert receive_until_closed(MessageStream(pair[1])) == [[b"complete"]]


def test_header_with_too_many_frames_raises(pair: tuple[socket.socket, socket.socket]) -> None:
    receiver = MessageStream(pair[1])
    pair[0].sendall(struct.pack("<I", MAX_FRAMES + 1))  # the count alone is enough to refuse
    with pytest.raises(ProtocolError):
        receiver.receive()


def test_header_with_max_frames_is_accepted(pair: tuple[socket.socket, socket.socket]) -> None:
    frames = [b"x"] * MAX_FRAMES
    pair[0].sendall(encode(frames))
    pair[0].close()
    assert receive_until_closed(MessageStream(pair[1])) == [frames]


def test_message_up_to_max_message_bytes_is_accepted(pair: tuple[socket.socket, socket.socket]) -> None:
    message = [b"abc", b"defgh"]
    receiver = MessageStream(pair[1], max_message_bytes=len(encode(message)))
    pair[0].sendall(encode(message))
    pair[0].close()
    assert receive_until_closed(receiver) == [message]


def test_message_over_max_message_bytes_raises(pair: tuple[socket.socket, socket.socket]) -> None:
    message = [b"abc", b"defgh"]
    receiver = MessageStream(pair[1], max_message_bytes=len(encode(message)) - 1)
    pair[0].sendall(encode(message))
    with pytest.raises(ProtocolError):
        receiver.receive()


def test_oversized_message_is_refused_on_its_header_alone(pair: tuple[socket.socket, socket.socket]) -> None:
    """The receiver must not wait for (or buffer) a body it is going to refuse."""
    receiver = MessageStream(pair[1], max_message_bytes=1 << 20)
    pair[0].sendall(struct.pack("<II", 1, 1 << 30))
    with pytest.raises(ProtocolError):
        receiver.receive()


# -- frames that are not plain bytes ------------------------------------------------------


def test_memoryview_frames_with_wide_items_are_sent_byte_exact(pair: tuple[socket.socket, socket.socket]) -> None:
    doubles = memoryview(array.array("d", [1.5, -2.0, 3.25]))
    ints = memoryview(array.array("i", [1, -1, 1 << 30]))
    matrix = memoryview(bytes(range(24))).cast("H", shape=[3, 4])
    frames = [doubles, ints, matrix, memoryview(bytearray(b"plain"))]
    assert [f.itemsize for f in frames] == [8, ints.itemsize, 2, 1]
    expected = encode([f.tobytes() for f in frames])
    MessageStream(pair[0]).send(frames)
    assert read_exactly(pair[1], len(expected)) == expected


def test_a_send_that_fails_leaves_the_stream_usable(pair: tuple[socket.socket, socket.socket]) -> None:
    """A frame ``send`` cannot take (a non-contiguous view) must not leave half a message
    queued: the next message has to arrive intact (the bad one whole, or not at all)."""
    sender, receiver = MessageStream(pair[0]), MessageStream(pair[1])
    strided = memoryview(b"abcdef")[::2]
    try:
        sender.send([b"first frame", strided])
    except (TypeError, ValueError, BufferError):
        refused = True
    else:
        refused = False
    sender.send([b"next"])
    pair[0].close()
    expected = [[b"next"]] if refused else [[b"first frame", b"ace"], [b"next"]]
    assert receive_until_closed(receiver) == expected


# -- blocking mode -------------------------------------------------------------------------


def test_blocking_mode_sends_everything_and_receives_until_eof(pair: tuple[socket.socket, socket.socket]) -> None:
    sender = MessageStream(pair[0], blocking=True)
    receiver = MessageStream(pair[1], blocking=True)
    big = random.Random(2).randbytes(20 << 20)
    messages = [[b"small"], [b"big", big], [], [b"x" * 10, b"y"]]
    received: list[Message] = []

    def read_all() -> None:
        while not receiver.closed:
            received.extend(receiver.receive())

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    for message in messages:
        sender.send(message)
        assert not sender.wants_write  # a blocking send returns once the kernel has it all
    sender.close()
    reader.join(TIMEOUT)
    assert not reader.is_alive(), "blocking receiver did not see EOF"
    assert received == messages
