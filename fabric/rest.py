"""The REST contract between ``sdk.client`` and ``service``: the values both sides write and
read, written once.

An error answer is ``{"error": {"type": ErrorType.X, "message", "request_id", ...}}``; a 413
names what was too big in ``what`` (``Oversized.X``), with ``size`` and ``limit``; a 429
adds ``retry_after``. A task is in one of ``STATES``; ``FINISHED`` ones have a result. A
page of a task group's results is a ``ResultPage``. ``UNSET`` marks a value left out where
None means something (an allow-list: None is "any function").
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Final

__all__ = ["DISPATCHED", "FAILED", "FINISHED", "RECEIVED", "RUNNING", "STATES", "SUCCESS", "UNFINISHED", "UNSET",
           "WAITING", "WAITING_FOR_INPUTS", "ErrorType", "Oversized", "ResultPage", "Unset"]

# -- task states ----------------------------------------------------------------------------
RECEIVED: Final = "received"
WAITING: Final = "waiting-for-endpoint"
WAITING_FOR_INPUTS: Final = "waiting-for-dependencies"
"""A task whose inputs (tasks passed as arguments) are unfinished: it waits in the store, not
for an endpoint; not in ``UNFINISHED``, which lists the states an endpoint deals with."""
DISPATCHED: Final = "dispatched"
RUNNING: Final = "running"
SUCCESS: Final = "success"
FAILED: Final = "failed"
STATES: Final = (RECEIVED, WAITING, WAITING_FOR_INPUTS, DISPATCHED, RUNNING, SUCCESS, FAILED)
UNFINISHED: Final = (RECEIVED, WAITING, DISPATCHED, RUNNING)
FINISHED: Final = frozenset({SUCCESS, FAILED})


class ErrorType:
    """The ``type`` of an error answer: stable, for clients to branch on (never the message)."""

    BAD_REQUEST: Final = "bad_request"                  # 400
    UNAUTHORIZED: Final = "unauthorized"                # 401
    FORBIDDEN: Final = "forbidden"                      # 403
    FUNCTION_NOT_ALLOWED: Final = "function_not_allowed"  # 403: the endpoint's allow-list
    SERIALIZER_NOT_ALLOWED: Final = "serializer_not_allowed"  # 403: the endpoint takes data-only arguments
    NOT_FOUND: Final = "not_found"                      # 404
    METHOD_NOT_ALLOWED: Final = "method_not_allowed"    # 405
    CONFLICT: Final = "conflict"                        # 409
    BATCH_CONFLICT: Final = "batch_conflict"            # 409: a batch id sent again with other content
    NO_ELIGIBLE_ENDPOINT: Final = "no_eligible_endpoint"  # 409: no endpoint of the group meets `requires`
    BATCH_GONE: Final = "batch_gone"                    # 410: a batch sent again after its tasks were purged
    PAYLOAD_TOO_LARGE: Final = "payload_too_large"      # 413
    UNSUPPORTED_MEDIA_TYPE: Final = "unsupported_media_type"  # 415
    RATE_LIMITED: Final = "rate_limited"                # 429
    INTERNAL_ERROR: Final = "internal_error"            # 500
    STORE_UNAVAILABLE: Final = "store_unavailable"      # 503
    IDENTITY_UNAVAILABLE: Final = "identity_unavailable"  # 503
    HTTP_ERROR: Final = "http_error"                    # any other status


class Oversized:
    """The ``what`` of a 413 answer: which limit was passed."""

    TASK_ARGUMENTS: Final = "task arguments"
    BATCH: Final = "batch"
    FUNCTION_BODY: Final = "function body"
    REQUEST_BODY: Final = "request body"
    DECOMPRESSED_REQUEST_BODY: Final = "decompressed request body"
    REQUEST: Final = "request"
    """What a client reports when the answer does not say."""


class Unset(enum.Enum):
    """The type of ``UNSET``: a value left out, so left as it is (where None means something)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@dataclasses.dataclass(frozen=True, slots=True)
class ResultPage:
    """Results of one task group after a cursor: columns (task ids, result kinds, payloads),
    the next cursor, and how many tasks of the group are unfinished. The payloads are as
    the workers made them; only a client deserializes them (``sdk.results.outcomes``)."""

    task_ids: list[str]
    kinds: list[int]
    payloads: list[bytes]
    cursor: int
    pending: int
    poll_after: float = 0.0
    """Seconds to let pass before the next poll (> 0 when the service could not let this one wait)."""
