"""``POST /v1/results``: one long-poll for the results of several task groups.

The body is a msgpack map ``{"groups": {task_group_id: after, ...}, "wait": s, "limit": n,
"watcher": str}`` (``wait``, ``limit``, ``watcher`` optional; at most ``MAX_GROUPS``
groups); the answer a msgpack map::

    {"groups": {task_group_id: {"task_ids", "kinds", "payloads", "cursor", "pending"}},
     "missing": [task_group_id], "poll_after": float}

Each group's entry is what ``GET /v1/task_groups/<id>/results`` answers for it (and
``after`` acknowledges that group's results up to it the same way); ``missing`` lists the
groups that are not the caller's or no longer exist. The poll waits, like that route,
until some group has new results, every group is finished, or ``wait`` is over; ``limit``
bounds the results of all groups together. ``watcher``: an id the client keeps for its
result watcher; a new poll of the same watcher takes the place of the one still waiting,
which answers at once (``service.polls``). One SDK ``Client`` watches the results of all
its ``Executor``\\ s this way, so it holds one long-poll slot.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response

from service.api.common import charge_rate_limit, current_user, field, msgpack_body, msgpack_response, services
from service.errors import HTTPInvalidField
from service.openapi import operation
from service.polls import long_poll
from service.records import ResultPage

blueprint = Blueprint("results", __name__)

MAX_GROUPS = 1_000
MAX_WATCHER_CHARS = 64


@blueprint.post("/results")
@operation("Results of several task groups after their cursors (msgpack), waiting up to `wait` seconds",
           request="msgpack", response="msgpack", errors=(400,))
def poll() -> Response:
    parts = services()
    data = msgpack_body(max_bin_len=0)
    cursors = _cursors(field(data, "groups", dict))
    wait = _number(field(data, "wait", (int, float), required=False, default=0.0), "wait", parts.config.max_wait)
    limit = int(_number(field(data, "limit", int, required=False, default=parts.config.max_results), "limit",
                        parts.config.max_results, low=1))
    watcher = field(data, "watcher", str, required=False)
    if watcher is not None and not 0 < len(watcher) <= MAX_WATCHER_CHARS:
        raise HTTPInvalidField("watcher", f"must have 1 to {MAX_WATCHER_CHARS} characters")
    user_id = current_user().user_id
    owned = {group: after for group, after in cursors.items() if parts.store.task_group_owner(group) == user_id}
    for group, after in owned.items():
        if after:
            parts.store.acknowledge(group, after)
    pages: dict[str, ResultPage] = {}

    def read() -> bool:
        pages.clear()
        left = limit
        for group, after in owned.items():
            pages[group] = page = parts.store.results_after(group, after, max(1, left))
            left -= len(page.task_ids)
            if left <= 0:
                break
        return any(page.task_ids for page in pages.values()) or all(not page.pending for page in pages.values())

    outcome = long_poll(parts.polls, user_id, watcher, wait, read)
    if not outcome.waited:
        charge_rate_limit()
    return msgpack_response({"groups": {group: _page(page) for group, page in pages.items()},
                             "missing": [group for group in cursors if group not in owned],
                             "poll_after": outcome.poll_after})


def _cursors(groups: dict[Any, Any]) -> dict[str, int]:
    if len(groups) > MAX_GROUPS:
        raise HTTPInvalidField("groups", f"names more than {MAX_GROUPS} task groups")
    for group, after in groups.items():
        if not isinstance(group, str) or not 0 < len(group) <= 64:
            raise HTTPInvalidField("groups", "must map task group ids to cursors")
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= 2**62:
            raise HTTPInvalidField(f"groups.{group}", "must be a cursor: an integer from 0 to 2**62")
    return groups


def _number(value: float, name: str, high: float, low: float = 0.0) -> float:
    if math.isnan(value):
        raise HTTPInvalidField(name, "must be a number")
    return min(high, max(low, value))


def _page(page: ResultPage) -> dict[str, Any]:
    return {"task_ids": page.task_ids, "kinds": page.kinds, "payloads": page.payloads, "cursor": page.cursor,
            "pending": page.pending}
