"""``/v1/task_groups``: a group's progress, its task ids, its results by cursor with long-poll,
and operations on the whole group (cancel, retry).

``GET /v1/task_groups/<id>`` answers JSON ``{"task_group_id", "tasks", "success", "failed",
"pending", "waiting", "running", "cancelled"}``: ``tasks`` = ``success`` + ``failed`` +
``pending``; ``pending`` = ``waiting`` (received or waiting-for-endpoint) + ``running``
(dispatched or running); ``cancelled`` counts the ``failed`` tasks that were cancelled;
``endpoints`` (endpoint id -> count; only once some were placed) where the group's tasks
submitted to an endpoint group were placed (a task moved by failover counts where it went last).

``GET /v1/task_groups/<id>/tasks?after=<cursor>&limit=<n>`` lists the group's task ids in
submission order (msgpack ``{"task_group_id", "task_ids", "cursor"}``), so a client that
restarted can re-attach to every task of a group.

``GET /v1/task_groups/<id>/results?after=<cursor>&wait=<s>&limit=<n>`` answers with a
msgpack map::

    {"task_group_id": str, "task_ids": [str], "kinds": [int], "payloads": [bytes],
     "cursor": int, "pending": int, "poll_after": float}

``kinds`` are ``fabric.protocol``'s ``RESULT_OK`` / ``RESULT_REMOTE_ERROR`` /
``RESULT_TASK_ERROR``; ``cursor`` is what to pass as ``after`` next time; ``pending``
counts the group's unfinished tasks. With ``wait`` > 0 and nothing new yet, the request
waits up to ``wait`` seconds (capped by the service) for a result to be committed, if it
gets one of the service's long-poll slots (``service.polls``); without one it answers at
once with ``poll_after`` > 0, the seconds to let pass before polling again. A poll that
waited costs no rate-limit token. ``POST /v1/results`` (``service.api.results``) watches
several groups in one poll.

Asking for results ``after=N`` acknowledges every result of the group up to seq ``N``: the
client holds them, so the service deletes those tasks soon after (a purged task's
``GET /v1/tasks/<id>`` is 404; failed tasks stay, for a retry, until ``result_ttl``).
Results never fetched are deleted ``result_ttl`` after they finished.

``POST /v1/task_groups/<id>/cancel`` (no body) answers ``{"cancelled": n, "cancel_requested": m}``:
the ``n`` unfinished tasks not yet sent to an endpoint are now failed with a
``TaskCancelled`` error (``RESULT_TASK_ERROR``), delivered by the results stream like any
result; the ``m`` tasks already dispatched are asked to be dropped by their endpoints,
which answer ``TaskCancelled`` results for those still queued there (running ones finish).
Cancelling again is harmless.

``POST /v1/task_groups/<id>/retry`` (no body) answers ``{"retried": n}``: the group's failed
tasks (not the cancelled ones, and not those already purged) wait to run again; each gets a
new seq when it finishes, so result cursors keep working, and ``pending`` counts them again.

Either answers 404 for a group that is not the caller's (or no longer exists).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response

from service.api.common import charge_rate_limit, current_user, msgpack_response, query_number, services
from service.errors import NotFound
from service.openapi import operation
from service.polls import long_poll
from service.records import ResultPage

blueprint = Blueprint("task_groups", __name__)

MAX_TASK_IDS = 100_000


def _owned(task_group_id: str) -> None:
    if services().store.task_group_owner(task_group_id) != current_user().user_id:
        raise NotFound(f"no task group {task_group_id!r}")


@blueprint.get("/task_groups/<task_group_id>")
@operation("A task group's progress: how many tasks, succeeded, failed (cancelled), pending (waiting, running)",
           errors=(404,))
def task_group(task_group_id: str) -> dict[str, Any]:
    _owned(task_group_id)
    counts = services().store.group_counts(task_group_id)
    if counts is None:
        raise NotFound(f"no task group {task_group_id!r}")
    reply = {"task_group_id": task_group_id, "tasks": counts.tasks, "success": counts.success,
             "failed": counts.failed, "pending": counts.pending, "waiting": counts.waiting,
             "running": counts.running, "cancelled": counts.cancelled, "memo_hits": counts.memo_hits}
    placements = services().store.placements(task_group_id)
    if placements:
        reply["endpoints"] = placements
    return reply


@blueprint.post("/task_groups/<task_group_id>/cancel")
@operation("Cancel the group's unfinished tasks: those not yet sent now, dispatched ones at their endpoints",
           errors=(404,))
def cancel(task_group_id: str) -> dict[str, Any]:
    parts = services()
    _owned(task_group_id)
    outcome = parts.store.cancel_group(task_group_id, time.time())
    for endpoint_id, task_ids in outcome.dispatched.items():
        parts.dispatcher.cancel_tasks(endpoint_id, task_ids)
    if outcome.cancelled:
        parts.signal.ring()  # long-polls of the group have results now
    return {"cancelled": outcome.cancelled,
            "cancel_requested": sum(len(task_ids) for task_ids in outcome.dispatched.values())}


@blueprint.post("/task_groups/<task_group_id>/retry")
@operation("Run the group's failed tasks (not the cancelled ones) again", errors=(404,))
def retry(task_group_id: str) -> dict[str, Any]:
    parts = services()
    _owned(task_group_id)
    outcome = parts.store.retry_group(task_group_id, parts.dispatcher.is_online, time.time())
    for endpoint_id in outcome.endpoints:
        parts.dispatcher.tasks_added(endpoint_id)
    return {"retried": outcome.retried}


@blueprint.get("/task_groups/<task_group_id>/tasks")
@operation("The group's task ids in submission order, after a cursor (msgpack: task_ids, cursor)",
           response="msgpack", errors=(400, 404),
           query=(("after", "integer", "cursor from the previous answer (default 0)"),
                  ("limit", "integer", "most task ids in one answer")))
def tasks(task_group_id: str) -> Response:
    parts = services()
    _owned(task_group_id)
    after = query_number("after", 0, 0, 2**62, integer=True)
    limit = query_number("limit", MAX_TASK_IDS, 1, MAX_TASK_IDS, integer=True)
    task_ids, cursor = parts.store.group_task_ids(task_group_id, after, limit)
    return msgpack_response({"task_group_id": task_group_id, "task_ids": task_ids, "cursor": cursor})


@blueprint.get("/task_groups/<task_group_id>/results")
@operation("Results after a cursor (msgpack), waiting up to `wait` seconds for the next one", response="msgpack",
           errors=(400, 404), query=(("after", "integer", "cursor of the last result seen (default 0)"),
                                     ("wait", "number", "seconds to wait for a new result (default 0)"),
                                     ("limit", "integer", "most results in one answer")))
def results(task_group_id: str) -> Response:
    parts = services()
    _owned(task_group_id)
    after = query_number("after", 0, 0, 2**62, integer=True)
    wait = query_number("wait", 0.0, 0.0, parts.config.max_wait)
    limit = query_number("limit", parts.config.max_results, 1, parts.config.max_results, integer=True)
    if after:
        parts.store.acknowledge(task_group_id, after)  # the client holds these: they may go
    pages: list[ResultPage] = []

    def read() -> bool:
        pages[:] = [parts.store.results_after(task_group_id, after, limit)]
        return bool(pages[0].task_ids or not pages[0].pending)

    outcome = long_poll(parts.polls, current_user().user_id, None, wait, read)
    if not outcome.waited:
        charge_rate_limit()
    page = pages[0]
    return msgpack_response({"task_group_id": task_group_id, "task_ids": page.task_ids, "kinds": page.kinds,
                             "payloads": page.payloads, "cursor": page.cursor, "pending": page.pending,
                             "poll_after": outcome.poll_after})
