"""Who may use what: sharing of endpoints and functions, groups of users, endpoint allow-lists.

An endpoint or a function is private to its owner until the owner shares it. A *grant*
(table ``grants``) names the object (``kind`` ``endpoint`` or ``function``, its id and its
owner: function ids are content hashes, so two owners may hold the same id) and a
*grantee*: ``public`` (every user), ``user:<user id>`` or ``group:<group id>`` (the
group's members, table ``group_members``, now and later). A caller's *principals* are
``public``, ``user:<their id>`` and ``group:<id>`` for each group they are in; an object
is visible to them when they own it or a grant names one of their principals. The
answer's *access* is ``owner``, ``shared`` (a grant to them or their group) or ``public``.

Each query here is one statement on the caller's connection (inside the caller's
transaction), indexed by the object's id or the grantee, so an access check costs a few
index lookups on every submit.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from service.records import OWNER, PUBLIC, SHARED, GroupRecord, Sharing, User

ENDPOINT = "endpoint"
FUNCTION = "function"
PUBLIC_GRANTEE = "public"

_MINE = "(SELECT 'user:' || :user UNION ALL SELECT 'group:' || group_id FROM group_members WHERE user_id = :user)"
# Whether a grant of the object (``o.id``, ``o.owner``) names one of the caller's principals,
# as ``'shared'``, ``'public'`` or NULL.
_ACCESS_OF = """CASE WHEN o.owner = :user THEN 'owner'
    WHEN EXISTS (SELECT 1 FROM grants g WHERE g.kind = :kind AND g.object_id = o.id AND g.owner = o.owner
                 AND g.grantee IN {mine}) THEN 'shared'
    WHEN EXISTS (SELECT 1 FROM grants g WHERE g.kind = :kind AND g.object_id = o.id AND g.owner = o.owner
                 AND g.grantee = 'public') THEN 'public' END""".format(mine=_MINE)
_RANK = {OWNER: 0, SHARED: 1, PUBLIC: 2}


def grantee_of_user(user_id: str) -> str:
    return f"user:{user_id}"


def grantee_of_group(group_id: str) -> str:
    return f"group:{group_id}"


def object_access(db: sqlite3.Connection, kind: str, table: str, columns: str, user_id: str, object_id: str,
                  extra: str = "") -> tuple[tuple[Any, ...], str] | None:
    """The best-reaching row of ``table`` with this id that the user may see, and how
    (owner before shared before public); None if none."""
    rows = db.execute(f"SELECT {columns}, {_ACCESS_OF} AS access FROM {table} o WHERE o.id = :object {extra}",
                      {"user": user_id, "kind": kind, "object": object_id}).fetchall()
    best = min((r for r in rows if r[-1] is not None), key=lambda r: _RANK[r[-1]], default=None)
    return (best[:-1], best[-1]) if best is not None else None


def visible(db: sqlite3.Connection, kind: str, table: str, columns: str, user_id: str,
            extra: str = "") -> list[tuple[tuple[Any, ...], str]]:
    """Rows of ``table`` the user owns or that were shared with them or their groups (not the
    merely public ones), with their access, oldest first."""
    rows = db.execute(
        f"SELECT {columns}, 'owner' FROM {table} o WHERE o.owner = :user {extra} "
        f"UNION ALL SELECT {columns}, 'shared' FROM {table} o WHERE o.owner != :user {extra} AND EXISTS "
        f"(SELECT 1 FROM grants g WHERE g.kind = :kind AND g.object_id = o.id AND g.owner = o.owner "
        f"AND g.grantee IN {_MINE}) ORDER BY o.created",
        {"user": user_id, "kind": kind}).fetchall()
    return [(r[:-1], r[-1]) for r in rows]


DISPLAY_NAME = "coalesce((SELECT i.username FROM identities i WHERE i.user_id = u.id LIMIT 1), u.name)"
"""A user's name as people know it: an identity provider's username, else the local name."""


def users_by_reference(db: sqlite3.Connection, references: Iterable[str]) -> dict[str, User | None]:
    """Each reference and the user it names, None if nobody: a user id, a local user name,
    or an identity provider's username or identity id (``ada@uni.edu``, a Globus identity UUID)."""
    found: dict[str, User | None] = {}
    for reference in dict.fromkeys(references):
        row = db.execute(
            f"SELECT u.id, {DISPLAY_NAME} FROM users u WHERE u.id = ?1 OR u.name = ?1 OR u.id IN "
            "(SELECT user_id FROM identities WHERE username = ?1 UNION ALL SELECT user_id FROM identities "
            "WHERE subject = ?1) LIMIT 1", (reference,)).fetchone()
        found[reference] = User(row[0], row[1]) if row else None
    return found


def display_names(db: sqlite3.Connection, user_ids: Sequence[str]) -> dict[str, str]:
    return dict(db.execute(f"SELECT u.id, {DISPLAY_NAME} FROM users u WHERE u.id IN ({','.join('?' * len(user_ids))})",
                           list(user_ids)).fetchall())


def user_for_identity(db: sqlite3.Connection, provider: str, subject: str, username: str) -> tuple[str, bool]:
    """The user id of an identity (``provider``, ``subject``), made on its first use as the
    local user ``<provider>:<subject>`` (found again by that name if only this table was
    lost), and whether anything was written. The username is kept up to date."""
    row = db.execute("SELECT user_id, username FROM identities WHERE provider = ? AND subject = ?",
                     (provider, subject)).fetchone()
    if row is not None:
        if row[1] != username:
            db.execute("UPDATE identities SET username = ? WHERE provider = ? AND subject = ?",
                       (username, provider, subject))
        return str(row[0]), row[1] != username
    name = f"{provider}:{subject}"
    db.execute("INSERT OR IGNORE INTO users (id, name, created) VALUES (?, ?, ?)",
               (str(uuid.uuid4()), name, time.time()))
    user_id = str(db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()[0])
    db.execute("INSERT INTO identities (provider, subject, username, user_id, created) VALUES (?, ?, ?, ?, ?)",
               (provider, subject, username, user_id, time.time()))
    return user_id, True


def sharing(db: sqlite3.Connection, kind: str, object_id: str, owner: str) -> Sharing:
    grantees = [r[0] for r in db.execute("SELECT grantee FROM grants WHERE kind = ? AND object_id = ? AND owner = ? "
                                         "ORDER BY grantee", (kind, object_id, owner))]
    user_ids = [g.partition(":")[2] for g in grantees if g.startswith("user:")]
    users = users_by_reference(db, user_ids)
    return Sharing(public=PUBLIC_GRANTEE in grantees,
                   users=tuple(u for u in (users[i] for i in user_ids) if u is not None),
                   groups=tuple(g.partition(":")[2] for g in grantees if g.startswith("group:")))


def set_sharing(db: sqlite3.Connection, kind: str, object_id: str, owner: str, grantees: Iterable[str]) -> None:
    """Replace the object's grants by ``grantees``."""
    db.execute("DELETE FROM grants WHERE kind = ? AND object_id = ? AND owner = ?", (kind, object_id, owner))
    db.executemany("INSERT OR IGNORE INTO grants (kind, object_id, owner, grantee) VALUES (?, ?, ?, ?)",
                   [(kind, object_id, owner, grantee) for grantee in grantees])


def forget_grants(db: sqlite3.Connection, kind: str, object_id: str, owner: str) -> None:
    db.execute("DELETE FROM grants WHERE kind = ? AND object_id = ? AND owner = ?", (kind, object_id, owner))


# -- groups ----------------------------------------------------------------------------
def create_group(db: sqlite3.Connection, owner: str, name: str) -> str | None:
    """A new group's id (its owner is its first member); None if the owner has one of that name."""
    group_id = str(uuid.uuid4())
    cursor = db.execute("INSERT OR IGNORE INTO groups (id, owner, name, created) VALUES (?, ?, ?, ?)",
                        (group_id, owner, name, time.time()))
    if cursor.rowcount == 0:
        return None
    db.execute("INSERT INTO group_members (group_id, user_id) VALUES (?, ?)", (group_id, owner))
    return group_id


def group(db: sqlite3.Connection, group_id: str) -> GroupRecord | None:
    row = db.execute("SELECT id, owner, name, created FROM groups WHERE id = ?", (group_id,)).fetchone()
    if row is None:
        return None
    members = db.execute(f"SELECT u.id, {DISPLAY_NAME} AS shown FROM group_members m JOIN users u ON u.id = m.user_id "
                         "WHERE m.group_id = ? ORDER BY shown", (group_id,)).fetchall()
    return GroupRecord(row[0], row[1], row[2], row[3], tuple(User(i, n) for i, n in members))


def groups_of(db: sqlite3.Connection, user_id: str) -> list[str]:
    """Ids of the groups the user owns or is a member of, oldest first."""
    rows = db.execute("SELECT id FROM groups WHERE owner = :user OR id IN "
                      "(SELECT group_id FROM group_members WHERE user_id = :user) ORDER BY created",
                      {"user": user_id}).fetchall()
    return [r[0] for r in rows]


def add_members(db: sqlite3.Connection, group_id: str, user_ids: Sequence[str]) -> None:
    db.executemany("INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?, ?)",
                   [(group_id, user_id) for user_id in user_ids])


def remove_member(db: sqlite3.Connection, group_id: str, user_id: str) -> bool:
    return db.execute("DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                      (group_id, user_id)).rowcount > 0


def delete_group(db: sqlite3.Connection, group_id: str) -> None:
    """The group, its members, and every grant to it."""
    db.execute("DELETE FROM group_members WHERE group_id = ?", (group_id,))
    db.execute("DELETE FROM grants WHERE grantee = ?", (grantee_of_group(group_id),))
    db.execute("DELETE FROM groups WHERE id = ?", (group_id,))


# -- endpoint allow-lists --------------------------------------------------------------
def set_allowed(db: sqlite3.Connection, endpoint_id: str, function_ids: Sequence[str] | None) -> None:
    """The endpoint's allow-list (None: any function), kept as a sorted JSON list."""
    encoded = None if function_ids is None else json.dumps(sorted(set(function_ids)))
    db.execute("UPDATE endpoints SET allowed_functions = ? WHERE id = ?", (encoded, endpoint_id))


def decode_allowed(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))
