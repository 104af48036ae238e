"""``/v1/groups``: named sets of users to share endpoints and functions with at once.

A group's creator owns it and is its first member. Its owner adds members (by user name or
id) and removes them; a member may leave (remove themselves); the owner deletes the group,
which ends everything shared with it. Owner and members see the group and who is in it;
to anyone else it does not exist (404). What is shared with a group reaches whoever is a
member at the time of each request. A group is JSON ``{"group_id", "name", "owner",
"role": "owner"|"member", "members": [user names]}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from service.api.common import current_user, field, json_body, services
from service.errors import HTTPBadRequest, HTTPConflict, HTTPForbidden, HTTPInvalidField, HTTPNotFound
from service.openapi import operation
from service.records import GroupRecord

blueprint = Blueprint("groups", __name__)

MAX_MEMBERS_PER_REQUEST = 1000


def _describe(group: GroupRecord) -> dict[str, Any]:
    caller = current_user().user_id
    owner = next((m.name for m in group.members if m.user_id == group.owner), None)
    if owner is None:
        owner = services().store.user_names([group.owner]).get(group.owner)
    return {"group_id": group.group_id, "name": group.name, "owner": owner,
            "role": "owner" if group.owner == caller else "member",
            "members": [member.name for member in group.members], "created": group.created}


def _visible(group_id: str) -> GroupRecord:
    group = services().store.get_group(group_id)
    caller = current_user().user_id
    if group is None or (group.owner != caller and all(m.user_id != caller for m in group.members)):
        raise HTTPNotFound(f"no group {group_id!r}")
    return group


def _owned(group_id: str, action: str) -> GroupRecord:
    group = _visible(group_id)
    if group.owner != current_user().user_id:
        raise HTTPForbidden(f"only the owner of group {group_id!r} may {action}")
    return group


@blueprint.post("/groups")
@operation("Create a group (its creator owns it and is its first member)", request="json", status=201,
           errors=(400, 409, 413, 415))
def create_group() -> tuple[dict[str, Any], int]:
    name = field(json_body(), "name", str)
    if not 0 < len(name) <= 128:
        raise HTTPInvalidField("name", "must have 1 to 128 characters")
    group = services().store.create_group(current_user().user_id, name)
    if group is None:
        raise HTTPConflict(f"you already have a group named {name!r}")
    return _describe(group), 201


@blueprint.get("/groups")
@operation("The groups the caller owns or is a member of")
def list_groups() -> dict[str, Any]:
    return {"groups": [_describe(g) for g in services().store.list_groups(current_user().user_id)]}


@blueprint.get("/groups/<group_id>")
@operation("One group and its members (owner and members only)", errors=(404,))
def get_group(group_id: str) -> dict[str, Any]:
    return _describe(_visible(group_id))


@blueprint.post("/groups/<group_id>/members")
@operation("Add users to the group: {\"users\": [names or ids]} (owner only)", request="json",
           errors=(400, 403, 404, 413, 415))
def add_members(group_id: str) -> dict[str, Any]:
    group = _owned(group_id, "add members")
    references: list[Any] = field(json_body(), "users", list)
    if len(references) > MAX_MEMBERS_PER_REQUEST or not all(isinstance(r, str) and r for r in references):
        raise HTTPInvalidField("users", f"must be a list of at most {MAX_MEMBERS_PER_REQUEST} user names or ids")
    found = services().store.find_users(references)
    unknown = [reference for reference, user in found.items() if user is None]
    if unknown:
        raise HTTPInvalidField("users", f"names no user {unknown[0][:64]!r}")
    updated = services().store.add_group_members(group.group_id, [u.user_id for u in found.values() if u])
    if updated is None:
        raise HTTPNotFound(f"no group {group_id!r}")
    return _describe(updated)


@blueprint.delete("/groups/<group_id>/members/<user>")
@operation("Remove a member (the owner removes anyone else; a member may remove themselves)", response="empty",
           status=204, errors=(400, 403, 404))
def remove_member(group_id: str, user: str) -> Response:
    group = _visible(group_id)
    caller = current_user().user_id
    member = next((m for m in group.members if user in (m.user_id, m.name)), None)
    if member is None:
        raise HTTPNotFound(f"no member {user!r} in group {group_id!r}")
    if member.user_id == group.owner:
        raise HTTPBadRequest("the owner stays a member of their group (delete the group instead)")
    if caller not in (group.owner, member.user_id):
        raise HTTPForbidden(f"only the owner of group {group_id!r} may remove other members")
    services().store.remove_group_member(group.group_id, member.user_id)
    return Response(status=204)


@blueprint.delete("/groups/<group_id>")
@operation("Delete the group: what was shared with it is shared with nobody now (owner only)",
           response="empty", status=204, errors=(403, 404))
def delete_group(group_id: str) -> Response:
    group = _owned(group_id, "delete it")
    services().store.delete_group(group.group_id)
    return Response(status=204)
