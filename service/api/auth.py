"""``/v1/auth``: who the token belongs to."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.api.common import current_user
from service.openapi import operation

blueprint = Blueprint("auth", __name__)


@blueprint.get("/auth/whoami")
@operation("The user the bearer token belongs to")
def whoami() -> dict[str, Any]:
    user = current_user()
    return {"user_id": user.user_id, "name": user.name}
