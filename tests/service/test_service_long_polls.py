"""Result long-polls hold no more than their share of the service's threads, and a poll that
waited costs no rate-limit token (real service process, bare HTTP)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import msgpack
from tests.support import poll_until
from tests.support.service import Api, Reply, ServiceProcess


def pending_group(api: Api) -> str:
    """A task group with one task that never finishes (its endpoint never connects)."""
    endpoint = api.register_endpoint(f"offline-{uuid.uuid4().hex[:6]}")
    function_id = api.register_function(b"function body")
    reply = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id, "args": [b"x"]})
    assert reply.status == 201, reply
    return str(reply.json()["task_group_id"])


class OpenPolls:
    """``count`` long-polls of ``api``'s user on ``group``, each in its own thread."""

    def __init__(self, api: Api, group: str, count: int, wait: float) -> None:
        self.replies: list[Reply] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._poll, args=(api, group, wait), daemon=True)
                        for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def _poll(self, api: Api, group: str, wait: float) -> None:
        reply = api.get(f"/v1/task_groups/{group}/results?wait={wait}")
        with self._lock:
            self.replies.append(reply)

    def answered(self) -> int:
        with self._lock:
            return len(self.replies)


def test_twenty_open_polls_of_one_user_leave_requests_and_polls_of_others_prompt(
        start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service(max_wait=120.0, max_polls_per_user=8)  # alice may hold every poll slot (8 of 16 threads)
    alice, bob = (Api(service.url, service.add_user(name)) for name in ("alice", "bob"))
    alice_group, bob_group = pending_group(alice), pending_group(bob)
    polls = OpenPolls(alice, alice_group, 20, wait=120.0)
    poll_until(lambda: polls.answered() >= 12, "the polls past the 8 slots to be answered at once")
    refused = [reply.msgpack() for reply in polls.replies]
    assert all(page["poll_after"] > 0 and page["task_ids"] == [] for page in refused), refused

    assert bob.get("/v1/auth/whoami").status == 200  # a thread was free for him
    assert polls.answered() == 12, "alice's 8 admitted polls are still waiting"

    bob_poll = OpenPolls(bob, bob_group, 1, wait=120.0)  # takes alice's oldest slot
    poll_until(lambda: polls.answered() == 13, "alice's oldest poll to give its slot to bob")
    assert polls.replies[-1].msgpack()["poll_after"] > 0
    assert bob.post(f"/v1/task_groups/{bob_group}/cancel").status == 200
    poll_until(lambda: bob_poll.answered() == 1, "bob's poll to deliver the cancellation")
    page = bob_poll.replies[0].msgpack()
    assert len(page["task_ids"]) == 1 and page["poll_after"] == 0, "bob's poll waited for his result"
    assert polls.answered() == 13


def test_a_poll_that_waited_costs_no_rate_limit_token(start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service(rate_limit=0.001, rate_burst=6)  # six requests, then none for 1000 s
    api = Api(service.url, service.add_user("carol"))
    group = pending_group(api)  # three requests
    for _ in range(5):  # waited for a result that never came: free
        page = api.results(group, wait=0.05)
        assert page["task_ids"] == [] and page["pending"] == 1
    statuses = [api.get(f"/v1/task_groups/{group}/results?wait=0").status for _ in range(4)]
    assert statuses == [200, 200, 200, 429], "polls answered without waiting are counted"


def test_default_rate_limit_admits_one_clients_sequential_round_trips(
        start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service()  # the default rate limit
    api = Api(service.url, service.add_user("dave"))
    group = pending_group(api)
    statuses = {api.get(f"/v1/task_groups/{group}").status for _ in range(600)}
    assert statuses == {200}, "one client asking as fast as it can, one request at a time, is never refused"


def multi_poll(api: Api, body: dict[str, Any]) -> Reply:
    return api.post("/v1/results", body=msgpack.packb(body, use_bin_type=True), content_type="application/msgpack")


def test_one_poll_watches_several_groups_and_a_watchers_new_poll_replaces_its_old_one(
        start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service(max_wait=120.0, max_polls_per_user=1)
    erin, frank = (Api(service.url, service.add_user(name)) for name in ("erin", "frank"))
    first, second, theirs = pending_group(erin), pending_group(erin), pending_group(frank)
    answers = waiting_poll(erin, first, {"groups": {first: 0}, "wait": 120.0, "watcher": "w1"})
    new: list[Reply] = []
    thread = threading.Thread(target=lambda: new.append(multi_poll(
        erin, {"groups": {first: 0, second: 0, theirs: 0}, "wait": 120.0, "watcher": "w1"})), daemon=True)
    thread.start()
    poll_until(lambda: answers, "the replaced poll to answer")
    replaced = answers[0].msgpack()
    assert replaced["poll_after"] == 0 and replaced["groups"][first]["task_ids"] == []
    assert erin.post(f"/v1/task_groups/{second}/cancel").status == 200
    poll_until(lambda: new, "the new poll to deliver the second group's result")
    page = new[0].msgpack()
    assert page["missing"] == [theirs], "another user's group is not watched"
    assert len(page["groups"][second]["task_ids"]) == 1 and page["groups"][first]["task_ids"] == []
    assert page["groups"][first]["pending"] == 1


def waiting_poll(api: Api, group: str, body: dict[str, Any]) -> list[Reply]:
    """Start a multi-group poll and return (a list that gets its answer) once it waits in the
    user's one slot: another poll of theirs is refused then (and a probe that took the slot
    first makes the poll answer at once, so it is started again)."""
    while True:
        answers: list[Reply] = []
        threading.Thread(target=lambda found=answers: found.append(multi_poll(api, body)), daemon=True).start()
        poll_until(lambda found=answers: found or api.results(group, wait=0.01)["poll_after"] > 0,
                   "the poll to wait")
        if not answers:
            return answers


def test_a_malformed_multi_group_poll_is_400_naming_the_field(start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service()
    api = Api(service.url, service.add_user("gina"))
    group = pending_group(api)
    for body, named in [({"groups": [group]}, "groups"), ({"groups": {group: -1}}, f"groups.{group}"),
                        ({"groups": {group: 0}, "wait": float("nan")}, "wait"),
                        ({"groups": {group: 0}, "watcher": "w" * 65}, "watcher")]:
        reply = multi_poll(api, body)
        assert reply.status == 400 and reply.json()["error"]["field"] == named, (body, reply)
    assert api.results(group)["pending"] == 1, "nothing was lost"
