"""Where the service keeps everything: users and tokens, functions, endpoints, tasks, results.

``Store`` (``base``) is the interface the app, the forwarder and the purger use;
``SQLiteStore`` (``sqlite``) is the embedded default (one file, WAL mode, safe for many
threads of one process and for several processes). Every method is one transaction, except
the whole-group and purge operations, which are many short ones: a batch of tasks is
written in one, the results of a ``ResultBatch`` are committed in one, so a reply is only
ever sent for what is on disk. The schema and its migrations are in ``schema``; whole task
groups (counters, cancel, retry) in ``task_groups``; deleting old rows in ``purge``; the
read-only report of ``fabric service status`` in ``status``.

Task states move ``received`` or ``waiting-for-endpoint`` (the endpoint was offline at
submission) -> ``dispatched`` -> ``running`` -> ``success`` | ``failed``; a batch sent as
soon as it is stored (dispatch at submit, ``add_dispatched``) starts ``dispatched``; a
re-send after a reconnect moves ``running`` back to ``dispatched``. A finished task changes only by an
explicit retry of its group (failed -> waiting again); a second result for it is ignored
(task-id dedup). Each committed result gets the next sequence number of its task group;
clients page through results by that cursor. Cancelling a group fails its unsent tasks
with a ``TaskCancelled`` result (committed the same way).

Results are purged once the client acknowledged them (it asked for results after their
seq) or after the time to live; a purged task is gone (``get_task`` answers None), its
group's counts are not changed by the purge.

Tokens are ``<token id>.<secret>``; only ``sha256(secret)`` is stored and compared in
constant time (users and tokens: ``users``). The file and its -wal and -shm files are
private to the service's user (0600); endpoints' secret keys are never stored.
"""

from __future__ import annotations

from service.records import (DISPATCHED, FAILED, RECEIVED, RUNNING, STATES, SUCCESS, UNFINISHED, WAITING, CancelOutcome,
                             CommitOutcome, EndpointRecord, FunctionRecord, GroupCounts, NewTasks, PurgeOutcome,
                             ResultPage, RetryOutcome, TaskRecord, TokenRecord, User, UserRecord)
from service.store.base import Store
from service.store.schema import IN_UNFINISHED as _IN_UNFINISHED
from service.store.schema import SCHEMA_VERSION
from service.store.sqlite import SQLiteStore, new_task_ids
from service.store.users import hash_secret

__all__ = [
    "DISPATCHED", "FAILED", "RECEIVED", "RUNNING", "SCHEMA_VERSION", "STATES", "SUCCESS", "UNFINISHED", "WAITING",
    "CancelOutcome", "CommitOutcome", "EndpointRecord", "FunctionRecord", "GroupCounts", "NewTasks", "PurgeOutcome",
    "ResultPage", "RetryOutcome", "SQLiteStore", "Store", "TaskRecord", "TokenRecord", "User", "UserRecord",
    "hash_secret", "new_task_ids",
]
_IN_UNFINISHED = _IN_UNFINISHED  # the partial index's condition, for tests that check query plans
