"""Every error the service raises, in one hierarchy under ``fabric.errors.FabricError``.

::

    FabricError                       (fabric.errors)
    └── ServerError                   an error of the service itself
        ├── StoreError                the store cannot do what was asked (corrupt file, schema)
        └── HTTPError                 a request the REST API refuses; rendered as JSON with ``status``
            ├── HTTPBadRequest            400  malformed JSON or msgpack, missing or wrong fields
            │   └── HTTPInvalidField      400  a field missing, of the wrong type, or a value that cannot be
            │                                  stored (too deep, lone surrogate, beyond 64 bits, NaN); ``field``
            ├── HTTPUnauthorized          401  no ``Authorization: Bearer`` token, or an unknown one
            ├── HTTPForbidden             403  visible to the caller, but only its owner may do this
            │   └── HTTPFunctionNotAllowed 403 the endpoint's allow-list does not name the function
            ├── HTTPNotFound              404  no such id *for this user* (others' ids look missing too)
            ├── HTTPMethodNotAllowed      405  the route exists, the method does not
            ├── HTTPConflict              409  the name is taken (a group of the caller's)
            │   ├── HTTPNoEligibleEndpoint 409 no member of an endpoint group meets the batch's routing constraints
            │   └── HTTPBatchConflict     409  a batch id sent again with other content
            ├── HTTPBatchGone             410  a batch sent again after its tasks were purged
            ├── HTTPPayloadTooLarge       413  a task's arguments, a function body, a batch or a request too big
            ├── HTTPUnsupportedMediaType  415  a request body in a ``Content-Encoding`` the service does not decode
            ├── HTTPRateLimited           429  too many requests from one user; ``retry_after`` seconds
            └── HTTPIdentityUnavailable   503  the identity provider cannot check tokens now (never access)

An ``HTTPError`` becomes the body ``{"error": {"type", "message", "request_id", ...}}`` with
its ``status``; ``type`` is the class's ``error_type`` (a ``fabric.rest.ErrorType``), stable
for clients to branch on, and ``details()`` adds fields (``field`` for a 400 about one field,
``task_group_id`` for 410, ``what``/``size``/``limit`` for 413, ``what`` an
``fabric.rest.Oversized``; ``retry_after`` for 429). The client's side of the
same answers is ``fabric.errors`` (``ServiceError`` and below).

The names before the HTTP prefix (``ServiceError``, ``ApiError``, ``BadRequest``, ...) are
kept at the end of this module as aliases, so code written against them still imports.
"""

from __future__ import annotations

from typing import ClassVar

from fabric.errors import FabricError
from fabric.rest import ErrorType


class ServerError(FabricError):
    """Base class of every error raised by the service."""


class StoreError(ServerError):
    """The store failed (the database file is unusable, or a write could not be made)."""


class HTTPError(ServerError):
    """A request the API refuses; ``status`` is the HTTP status code it answers with."""

    status: ClassVar[int] = 400
    error_type: ClassVar[str] = ErrorType.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.error_type}: {self.message}"

    def details(self) -> dict[str, object]:
        """Fields a client may branch on, added to the error body beside type and message."""
        return {}


class HTTPBadRequest(HTTPError):
    status = 400
    error_type = ErrorType.BAD_REQUEST


class HTTPInvalidField(HTTPBadRequest):
    """A field missing, of the wrong type, or with a value the service cannot take; ``field``
    is its path (``a.b[0]``), added to the error body (``type`` stays ``bad_request``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field

    def details(self) -> dict[str, object]:
        return {"field": self.field}


class HTTPUnauthorized(HTTPError):
    status = 401
    error_type = ErrorType.UNAUTHORIZED


class HTTPForbidden(HTTPError):
    status = 403
    error_type = ErrorType.FORBIDDEN


class HTTPFunctionNotAllowed(HTTPForbidden):
    error_type = ErrorType.FUNCTION_NOT_ALLOWED


class HTTPSerializerNotAllowed(HTTPForbidden):
    error_type = ErrorType.SERIALIZER_NOT_ALLOWED


class HTTPConflict(HTTPError):
    status = 409
    error_type = ErrorType.CONFLICT


class HTTPNoEligibleEndpoint(HTTPConflict):
    """No member of the endpoint group (that the caller reaches) meets the routing constraints."""

    error_type = ErrorType.NO_ELIGIBLE_ENDPOINT

    def __init__(self, endpoint_group_id: str, requires: dict[str, object]) -> None:
        super().__init__(f"no endpoint of group {endpoint_group_id!r} that you reach meets {requires!r}")
        self.endpoint_group_id, self.requires = endpoint_group_id, requires

    def details(self) -> dict[str, object]:
        return {"endpoint_group_id": self.endpoint_group_id, "requires": self.requires}


class HTTPBatchConflict(HTTPConflict):
    error_type = ErrorType.BATCH_CONFLICT


class HTTPBatchGone(HTTPError):
    """A batch sent again (same ``batch_id``) after some of its tasks were purged."""

    status = 410
    error_type = ErrorType.BATCH_GONE

    def __init__(self, message: str, *, task_group_id: str) -> None:
        super().__init__(message)
        self.task_group_id = task_group_id

    def details(self) -> dict[str, object]:
        return {"task_group_id": self.task_group_id}


class HTTPNotFound(HTTPError):
    status = 404
    error_type = ErrorType.NOT_FOUND


class HTTPMethodNotAllowed(HTTPError):
    status = 405
    error_type = ErrorType.METHOD_NOT_ALLOWED


class HTTPPayloadTooLarge(HTTPError):
    """``what`` (a ``fabric.rest.Oversized``) of ``size`` passed ``limit``."""

    status = 413
    error_type = ErrorType.PAYLOAD_TOO_LARGE

    def __init__(self, what: str, size: int, limit: int, unit: str = "bytes") -> None:
        super().__init__(f"{what} of {size} {unit} exceeds the limit of {limit} {unit}")
        self.what, self.size, self.limit = what, size, limit

    def details(self) -> dict[str, object]:
        return {"what": self.what, "size": self.size, "limit": self.limit}


class HTTPUnsupportedMediaType(HTTPError):
    status = 415
    error_type = ErrorType.UNSUPPORTED_MEDIA_TYPE


class HTTPRateLimited(HTTPError):
    status = 429
    error_type = ErrorType.RATE_LIMITED

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests; retry after {retry_after:.2f} s")
        self.retry_after = retry_after

    def details(self) -> dict[str, object]:
        return {"retry_after": self.retry_after}


class HTTPIdentityUnavailable(HTTPError):
    """The identity provider (Globus Auth) could not be asked about a token: no access, retry later."""

    status = 503
    error_type = ErrorType.IDENTITY_UNAVAILABLE


# -- the names before issue 13, kept as aliases so code written against them still imports --
ServiceError = ServerError
ApiError = HTTPError
BadRequest = HTTPBadRequest
InvalidField = HTTPInvalidField
Unauthorized = HTTPUnauthorized
Forbidden = HTTPForbidden
FunctionNotAllowed = HTTPFunctionNotAllowed
SerializerNotAllowed = HTTPSerializerNotAllowed
Conflict = HTTPConflict
BatchConflict = HTTPBatchConflict
NoEligibleEndpoint = HTTPNoEligibleEndpoint
BatchGone = HTTPBatchGone
NotFound = HTTPNotFound
MethodNotAllowed = HTTPMethodNotAllowed
PayloadTooLarge = HTTPPayloadTooLarge
UnsupportedMediaType = HTTPUnsupportedMediaType
RateLimited = HTTPRateLimited
IdentityUnavailable = HTTPIdentityUnavailable
