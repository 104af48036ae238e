"""Functions the container tests run inside containers (imported by reference there too)."""

from __future__ import annotations

import os
import socket


def look_around(data_dir: str, host_port: int, count: bool = True) -> dict[str, object]:
    """What a task sees: the container's files, whether the system is writable, the network,
    and how many tasks this container instance has run (a counter in its private /tmp)."""
    marker = os.path.join(data_dir, "marker")
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=2):
            reached_host = True
    except OSError:
        reached_host = False
    try:
        with open("/usr/fabric-write-test", "w"):
            pass
        os.unlink("/usr/fabric-write-test")
        system_writable = True
    except OSError:
        system_writable = False
    counter = "/tmp/fabric-test-counter"
    tasks = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    if count:
        with open(counter, "w") as file:
            file.write(str(tasks))
    return {
        "marker": open(marker).read() if os.path.exists(marker) else None,
        "reached_host": reached_host,
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "system_writable": system_writable,
        "tasks_in_this_container": tasks,
    }


def sleep_inside(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "woke"
