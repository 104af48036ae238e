"""Users and their API tokens: issue, check, list, revoke; remove a user.

A token is ``<token id>.<secret>``: the id (16 hex digits) names it in listings and in
revocation, only ``sha256(secret)`` is stored. A user holds any number of tokens, each
with a name (one per machine or purpose: a laptop, an endpoint, CI; names are labels,
the id is what revocation takes), so one leaked token is revoked without cutting off the
others. Every request looks its
token up, so a revocation or a removal holds from the next request on.

Removing a user deletes their tokens, identities and group memberships, the groups they
own, what was shared with them, and their endpoints (an endpoint's key is refused at the
next connection, a live connection is closed within a forwarder tick) and functions
(hidden, as by ``delete_function``: tasks already accepted still get their bodies). Their
task groups still unfinished are named for the caller to cancel (``fabric service
remove-user`` does: tasks not yet sent never run; those already sent finish); results
stay until the purge expires them. A user of an identity provider (Globus
Auth) comes back as a new, empty user at their next request: revoke them at the provider.

Each function here runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
import uuid

from service.records import TokenRecord, User, UserRecord
from service.store import access

TOKEN_ID_HEX = 16


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def issue_token(db: sqlite3.Connection, user_id: str, name: str | None) -> tuple[TokenRecord, str]:
    """A new token for the user, named ``name`` (None: by its id), and the token itself."""
    token_id, secret = secrets.token_hex(TOKEN_ID_HEX // 2), secrets.token_urlsafe(32)
    record = TokenRecord(token_id, user_id, token_id if name is None else name, time.time())
    db.execute("INSERT INTO tokens (id, user_id, hash, created, name) VALUES (?, ?, ?, ?, ?)",
               (token_id, user_id, hash_secret(secret), record.created, record.name))
    return record, f"{token_id}.{secret}"


def user_for_token(db: sqlite3.Connection, token: str) -> User | None:
    token_id, _, secret = token.partition(".")
    if not token_id or not secret:
        return None
    row = db.execute("SELECT t.hash, u.id, u.name FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
                     (token_id,)).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[0]), hash_secret(secret)):
        return None
    return User(row[1], row[2])


def find_user(db: sqlite3.Connection, reference: str) -> User | None:
    """The user of this local name or id."""
    row = db.execute("SELECT id, name FROM users WHERE name = ?1 OR id = ?1 ORDER BY name = ?1 DESC LIMIT 1",
                     (reference,)).fetchone()
    return User(row[0], row[1]) if row else None


def list_users(db: sqlite3.Connection) -> list[UserRecord]:
    rows = db.execute("SELECT u.id, u.name, u.created, (SELECT count(*) FROM tokens t WHERE t.user_id = u.id) "
                      "FROM users u ORDER BY u.name").fetchall()
    return [UserRecord(*row) for row in rows]


def list_tokens(db: sqlite3.Connection, user_id: str | None, prefix: str = "") -> list[TokenRecord]:
    """The user's tokens (None: everyone's) whose id starts with ``prefix``, oldest first."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.execute("SELECT id, user_id, name, created FROM tokens WHERE (?1 IS NULL OR user_id = ?1) "
                      "AND id LIKE ?2 ESCAPE '\\' ORDER BY created, id", (user_id, escaped + "%")).fetchall()
    return [TokenRecord(*row) for row in rows]


def revoke_token(db: sqlite3.Connection, token_id: str, user_id: str | None) -> bool:
    """Delete the token (only if it is ``user_id``'s, unless None)."""
    return db.execute("DELETE FROM tokens WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                      (token_id, user_id)).rowcount > 0


def remove_user(db: sqlite3.Connection, user_id: str) -> list[str]:
    """The user and everything that lets anyone act as them or reach what they own; returns
    the ids of their task groups with unfinished tasks (for the caller to cancel)."""
    unfinished = [row[0] for row in db.execute("SELECT id FROM task_groups WHERE owner = ? "
                                               "AND finished_count < task_count", (user_id,))]
    for (group_id,) in db.execute("SELECT id FROM groups WHERE owner = ?", (user_id,)).fetchall():
        access.delete_group(db, group_id)
    for statement in ("DELETE FROM tokens WHERE user_id = ?", "DELETE FROM identities WHERE user_id = ?",
                      "DELETE FROM group_members WHERE user_id = ?", "DELETE FROM grants WHERE owner = ?",
                      "UPDATE functions SET deleted = 1 WHERE owner = ?", "DELETE FROM endpoints WHERE owner = ?",
                      "DELETE FROM users WHERE id = ?"):
        db.execute(statement, (user_id,))
    db.execute("DELETE FROM grants WHERE grantee = ?", (access.grantee_of_user(user_id),))
    return unfinished


def new_user(db: sqlite3.Connection, name: str) -> tuple[str, bool]:
    """The id of the local user ``name``, made if new; (id, created)."""
    row = db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return str(row[0]), False
    user_id = str(uuid.uuid4())
    db.execute("INSERT INTO users (id, name, created) VALUES (?, ?, ?)", (user_id, name, time.time()))
    return user_id, True
