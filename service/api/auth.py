"""``/v1/auth``: who the token belongs to, and the caller's own tokens.

``GET /v1/auth/tokens`` lists the caller's tokens (id, name, issued; never a secret: the
service keeps only hashes); ``DELETE /v1/auth/tokens/<token id>`` revokes one of them (the
one in use too), refused from the next request on. Tokens are issued by the operator
(``fabric service add-user``), never through the API: a leaked token cannot mint others
that would outlive its revocation. With Globus Auth identities the list is empty.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from service.api.common import current_user, services
from service.errors import NotFound
from service.openapi import operation

blueprint = Blueprint("auth", __name__)


@blueprint.get("/auth/whoami")
@operation("The user the bearer token belongs to")
def whoami() -> dict[str, Any]:
    user = current_user()
    return {"user_id": user.user_id, "name": user.name}


@blueprint.get("/auth/tokens")
@operation("The caller's tokens: id (the part before the dot), name, issued; never secrets")
def list_tokens() -> dict[str, Any]:
    tokens = services().store.list_tokens(current_user().user_id)
    return {"tokens": [{"token_id": t.token_id, "name": t.name, "created": t.created} for t in tokens]}


@blueprint.delete("/auth/tokens/<token_id>")
@operation("Revoke one of the caller's tokens (refused from the next request on)", response="empty", status=204,
           errors=(404,))
def revoke_token(token_id: str) -> Response:
    if not services().store.revoke_token(token_id, current_user().user_id):
        raise NotFound(f"you have no token {token_id!r}")
    return Response(status=204)
