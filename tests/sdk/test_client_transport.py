"""``Client`` through its transport seam, with no socket: retries of transient failures and the
mapping of every error answer to ``fabric.errors``. ``Scripted`` is a real transport (the
``sdk.transport.Transport`` shape) that answers from a list and records what was asked."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgpack
import pytest

from fabric.errors import (AuthError, BatchGone, Forbidden, InvalidRequest, NotFound, PayloadTooLarge, RateLimited,
                           ServiceError, ServiceInternalError, ServiceUnavailable)
from fabric.rest import ErrorType, Oversized
from sdk.client import Client
from sdk.transport import Request, Response

URL = "http://fabric.invalid:8470"


class Scripted:
    """Answers each request with the next of ``answers`` (a ``Response``, or an exception to raise)."""

    def __init__(self, answers: Iterable[Response | Exception]) -> None:
        self.answers = deque(answers)
        self.requests: list[Request] = []
        self.closed = False

    def handle_request(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self.answers.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def json_answer(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


def error_answer(status: int, error_type: str, message: str = "no", **details: Any) -> Response:
    return json_answer(status, {"error": {**details, "type": error_type, "message": message, "request_id": "r1"}})


def client(*answers: Response | Exception, retry_for: float = 5.0) -> tuple[Client, Scripted]:
    transport = Scripted(answers)
    return Client(URL, "secret", retry_for=retry_for, transport=transport), transport


WHOAMI = json_answer(200, {"user_id": "u1", "name": "alice"})


def test_a_request_carries_the_token_the_query_and_the_timeout() -> None:
    page = {"task_ids": ["t1"], "kinds": [0], "payloads": [b"x"], "cursor": 1, "pending": 0}
    api, transport = client(Response(200, msgpack.packb(page)))
    result = api.get_results("g1", after=3, wait=2.0)
    assert (result.task_ids, result.cursor, result.pending) == (["t1"], 1, 0)
    [request] = transport.requests
    assert request.method == "GET"
    assert request.url == f"{URL}/v1/task_groups/g1/results?after=3&wait=2.0"
    assert request.headers["Authorization"] == "Bearer secret"
    assert request.timeout == api.timeout + 2.0


@pytest.mark.parametrize("transient", [
    error_answer(503, ErrorType.STORE_UNAVAILABLE),
    Response(502, b"bad gateway"),
    Response(504, b""),
    ServiceUnavailable("cannot reach the service"),
    error_answer(429, ErrorType.RATE_LIMITED, retry_after=0.01),
])
def test_transient_failures_are_retried_until_an_answer(transient: Response | Exception) -> None:
    api, transport = client(transient, transient, WHOAMI)
    assert api.whoami() == {"user_id": "u1", "name": "alice"}
    assert len(transport.requests) == 3


def test_retries_end_with_the_last_failure_once_retry_for_is_spent() -> None:
    api, transport = client(*[ServiceUnavailable("down")] * 50, retry_for=0.0)
    with pytest.raises(ServiceUnavailable, match="down"):
        api.whoami()
    assert len(transport.requests) == 1


@pytest.mark.parametrize("answer", [
    error_answer(400, ErrorType.BAD_REQUEST),
    error_answer(401, ErrorType.UNAUTHORIZED),
    error_answer(404, ErrorType.NOT_FOUND),
    error_answer(500, ErrorType.INTERNAL_ERROR),  # it failed on this very request: it would again
    error_answer(429, ErrorType.RATE_LIMITED),    # no retry_after: the service did not say when
])
def test_a_refusal_is_not_retried(answer: Response) -> None:
    api, transport = client(answer, WHOAMI)
    with pytest.raises(ServiceError):
        api.whoami()
    assert len(transport.requests) == 1


@pytest.mark.parametrize("answer, kind, error_type", [
    (error_answer(400, ErrorType.BAD_REQUEST), InvalidRequest, ErrorType.BAD_REQUEST),
    (error_answer(401, ErrorType.UNAUTHORIZED), AuthError, ErrorType.UNAUTHORIZED),
    (error_answer(403, ErrorType.FORBIDDEN), Forbidden, ErrorType.FORBIDDEN),
    (error_answer(403, ErrorType.FUNCTION_NOT_ALLOWED), Forbidden, ErrorType.FUNCTION_NOT_ALLOWED),
    (error_answer(404, ErrorType.NOT_FOUND), NotFound, ErrorType.NOT_FOUND),
    (error_answer(405, ErrorType.METHOD_NOT_ALLOWED), InvalidRequest, ErrorType.METHOD_NOT_ALLOWED),
    (error_answer(409, ErrorType.CONFLICT), InvalidRequest, ErrorType.CONFLICT),
    (error_answer(409, ErrorType.BATCH_CONFLICT), InvalidRequest, ErrorType.BATCH_CONFLICT),
    (error_answer(410, ErrorType.BATCH_GONE), BatchGone, ErrorType.BATCH_GONE),
    (error_answer(415, ErrorType.UNSUPPORTED_MEDIA_TYPE), InvalidRequest, ErrorType.UNSUPPORTED_MEDIA_TYPE),
    (error_answer(500, ErrorType.INTERNAL_ERROR), ServiceInternalError, ErrorType.INTERNAL_ERROR),
    (error_answer(503, ErrorType.STORE_UNAVAILABLE), ServiceUnavailable, ErrorType.STORE_UNAVAILABLE),
])
def test_each_error_answer_becomes_its_typed_exception(answer: Response, kind: type[ServiceError],
                                                       error_type: str) -> None:
    api, _ = client(answer, retry_for=0.0)
    with pytest.raises(kind) as raised:
        api.whoami()
    assert type(raised.value) is kind
    assert (raised.value.status, raised.value.error_type, raised.value.request_id) == (answer.status, error_type, "r1")
    assert str(raised.value) == f"{answer.status} no (request r1)"


def test_a_413_names_what_was_too_big() -> None:
    api, _ = client(error_answer(413, ErrorType.PAYLOAD_TOO_LARGE, what=Oversized.TASK_ARGUMENTS, size=20, limit=10))
    with pytest.raises(PayloadTooLarge) as raised:
        api.whoami()
    assert (raised.value.what, raised.value.size, raised.value.limit) == (Oversized.TASK_ARGUMENTS, 20, 10)


def test_a_429_past_retry_for_is_rate_limited_with_its_pause() -> None:
    api, _ = client(error_answer(429, ErrorType.RATE_LIMITED, retry_after=7.5), retry_for=0.0)
    with pytest.raises(RateLimited) as raised:
        api.whoami()
    assert raised.value.retry_after == 7.5


def test_a_429_may_say_when_in_its_retry_after_header() -> None:
    pause = Response(429, b"slow down", {"Retry-After": "0.01"})
    api, transport = client(pause, WHOAMI)
    assert api.whoami()["name"] == "alice"
    assert len(transport.requests) == 2


def test_an_error_answer_that_is_not_json_keeps_its_text() -> None:
    api, _ = client(Response(418, b"I'm a teapot", reason="teapot"), retry_for=0.0)
    with pytest.raises(InvalidRequest, match="I'm a teapot") as raised:
        api.whoami()
    assert (raised.value.status, raised.value.error_type) == (418, "")


def test_an_undecodable_success_is_a_service_error() -> None:
    api, _ = client(Response(200, b"{not json"))
    with pytest.raises(ServiceError, match="undecodable answer"):
        api.whoami()
