"""What the endpoint and function routes share: who may see an object, and its sharing body.

A sharing body (``GET``/``PUT .../sharing``) is JSON::

    {"public": bool,                 # every user may use it
     "users": [str, ...],            # user names (or user ids)
     "groups": [str, ...]}           # group ids; the owner must own or be in each group

``PUT`` replaces the whole sharing; the reply is the sharing now in force (users by name).
Only the owner may read or change it (403 for a user it is shared with, 404 for others).
"""

from __future__ import annotations

from typing import Any

from service.api.common import current_user, field, json_body, services
from service.errors import HTTPBadRequest, HTTPForbidden, HTTPInvalidField, HTTPNotFound
from service.records import OWNER, Sharing
from service.store import access

MAX_GRANTEES = 1000


def owned(found: tuple[Any, str] | None, what: str, *, action: str) -> Any:
    """The record if the caller owns it: 404 if they cannot see it, 403 if it is only shared with them."""
    if found is None:
        raise HTTPNotFound(f"no {what}")
    record, how = found
    if how != OWNER:
        raise HTTPForbidden(f"only the owner of {what} may {action}")
    return record


def grantees(data: dict[str, Any]) -> list[str]:
    """The grants a sharing body asks for (400 for an unknown user or a group not the caller's)."""
    public = field(data, "public", bool, required=False, default=False)
    users: list[Any] = field(data, "users", list, required=False, default=[])
    groups: list[Any] = field(data, "groups", list, required=False, default=[])
    for name, references in (("users", users), ("groups", groups)):
        if not all(isinstance(r, str) and 0 < len(r) <= 256 for r in references):
            raise HTTPInvalidField(name, "must be a list of names or ids (1 to 256 characters each)")
    if len(users) + len(groups) > MAX_GRANTEES:
        raise HTTPBadRequest(f"share with at most {MAX_GRANTEES} users and groups")
    store, caller = services().store, current_user().user_id
    found = store.find_users(users)
    unknown = [reference for reference, user in found.items() if user is None]
    if unknown:
        raise HTTPInvalidField("users", f"names no user {unknown[0][:64]!r}")
    mine = {g.group_id for g in store.list_groups(caller)}
    foreign = [group_id for group_id in groups if group_id not in mine]
    if foreign:
        raise HTTPInvalidField("groups", f"names no group {foreign[0][:64]!r} among the caller's groups")
    granted = [access.PUBLIC_GRANTEE] if public else []
    granted += [access.grantee_of_user(user.user_id) for user in found.values() if user and user.user_id != caller]
    granted += [access.grantee_of_group(group_id) for group_id in groups]
    return granted


def describe(sharing: Sharing) -> dict[str, Any]:
    return {"public": sharing.public, "users": [user.name for user in sharing.users], "groups": list(sharing.groups)}


def read(kind: str, object_id: str, owner: str) -> dict[str, Any]:
    """The reply of ``GET .../sharing``."""
    return describe(services().store.get_sharing(kind, object_id, owner))


def replace(kind: str, object_id: str, owner: str) -> dict[str, Any]:
    """``PUT .../sharing``: the request body's sharing in force, and the reply."""
    return describe(services().store.set_sharing(kind, object_id, owner, grantees(json_body())))


def owner_names(owner_ids: list[str]) -> dict[str, str]:
    return services().store.user_names(owner_ids)
