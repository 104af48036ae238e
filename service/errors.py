"""Every error the service raises, in one hierarchy.

::

    ServiceError
    ├── StoreError                the store cannot do what was asked (corrupt file, schema)
    └── ApiError                  a request the REST API refuses; rendered as JSON with ``status``
        ├── BadRequest            400  malformed JSON or msgpack, missing or wrong fields
        │   └── InvalidField      400  a field missing, of the wrong type, or a value that cannot be
        │                              stored (too deep, lone surrogate, beyond 64 bits, NaN); ``field``
        ├── Unauthorized          401  no ``Authorization: Bearer`` token, or an unknown one
        ├── Forbidden             403  visible to the caller, but only its owner may do this
        │   └── FunctionNotAllowed 403 the endpoint's allow-list does not name the function
        ├── NotFound              404  no such id *for this user* (others' ids look missing too)
        ├── MethodNotAllowed      405  the route exists, the method does not
        ├── Conflict              409  the name is taken (a group of the caller's)
        │   ├── NoEligibleEndpoint 409 no member of an endpoint group meets the batch's routing constraints
        │   └── BatchConflict     409  a batch id sent again with other content
        ├── BatchGone             410  a batch sent again after its tasks were purged
        ├── PayloadTooLarge       413  a task's arguments, a function body, a batch or a request too big
        ├── UnsupportedMediaType  415  a request body in a ``Content-Encoding`` the service does not decode
        ├── RateLimited           429  too many requests from one user; ``retry_after`` seconds
        └── IdentityUnavailable   503  the identity provider cannot check tokens now (never access)

An ``ApiError`` becomes the body ``{"error": {"type", "message", "request_id", ...}}`` with
its ``status``; ``type`` is the class's ``error_type``, stable for clients to branch on, and
``details()`` adds fields (``field`` for a 400 about one field, ``task_group_id`` for 410,
``what``/``size``/``limit`` for 413, ``retry_after`` for 429).
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base class of every error raised by the service."""


class StoreError(ServiceError):
    """The store failed (the database file is unusable, or a write could not be made)."""


class ApiError(ServiceError):
    """A request the API refuses; ``status`` is the HTTP status code it answers with."""

    status: ClassVar[int] = 400
    error_type: ClassVar[str] = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"

    def details(self) -> dict[str, object]:
        """Fields a client may branch on, added to the error body beside type and message."""
        return {}


class BadRequest(ApiError):
    status = 400
    error_type = "bad_request"


class InvalidField(BadRequest):
    """A field missing, of the wrong type, or with a value the service cannot take; ``field``
    is its path (``a.b[0]``), added to the error body (``type`` stays ``bad_request``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field

    def details(self) -> dict[str, object]:
        return {"field": self.field}


class Unauthorized(ApiError):
    status = 401
    error_type = "unauthorized"


class Forbidden(ApiError):
    status = 403
    error_type = "forbidden"


class FunctionNotAllowed(Forbidden):
    error_type = "function_not_allowed"


class Conflict(ApiError):
    status = 409
    error_type = "conflict"


class NoEligibleEndpoint(Conflict):
    """No member of the endpoint group (that the caller reaches) meets the routing constraints."""

    error_type = "no_eligible_endpoint"

    def __init__(self, endpoint_group_id: str, requires: dict[str, object]) -> None:
        super().__init__(f"no endpoint of group {endpoint_group_id!r} that you reach meets {requires!r}")
        self.endpoint_group_id, self.requires = endpoint_group_id, requires

    def details(self) -> dict[str, object]:
        return {"endpoint_group_id": self.endpoint_group_id, "requires": self.requires}


class BatchConflict(Conflict):
    error_type = "batch_conflict"


class BatchGone(ApiError):
    """A batch sent again (same ``batch_id``) after some of its tasks were purged."""

    status = 410
    error_type = "batch_gone"

    def __init__(self, message: str, *, task_group_id: str) -> None:
        super().__init__(message)
        self.task_group_id = task_group_id

    def details(self) -> dict[str, object]:
        return {"task_group_id": self.task_group_id}


class NotFound(ApiError):
    status = 404
    error_type = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    error_type = "method_not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    error_type = "payload_too_large"

    def __init__(self, what: str, size: int, limit: int, unit: str = "bytes") -> None:
        super().__init__(f"{what} of {size} {unit} exceeds the limit of {limit} {unit}")
        self.what, self.size, self.limit = what, size, limit

    def details(self) -> dict[str, object]:
        return {"what": self.what, "size": self.size, "limit": self.limit}


class UnsupportedMediaType(ApiError):
    status = 415
    error_type = "unsupported_media_type"


class RateLimited(ApiError):
    status = 429
    error_type = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests; retry after {retry_after:.2f} s")
        self.retry_after = retry_after

    def details(self) -> dict[str, object]:
        return {"retry_after": self.retry_after}


class IdentityUnavailable(ApiError):
    """The identity provider (Globus Auth) could not be asked about a token: no access, retry later."""

    status = 503
    error_type = "identity_unavailable"
