"""``fabric endpoint restart|delete|whoami`` with real daemons and a real service."""

from __future__ import annotations

import psutil
from tests.support.endpoint_cli import Endpoints, online
from tests.support.service import Api, ServiceProcess


def test_restart_delete_whoami(endpoints: Endpoints, service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    me = endpoints.run("whoami", "--service-url", service.url)
    assert me.returncode == 0 and me.stdout.startswith("alice (") and service.url in me.stdout, me

    endpoints.configure("laptop")
    assert endpoints.run("start", "laptop").returncode == 0
    first = int(endpoints.pid_file("laptop").read_text())
    endpoint_id = endpoints.registration("laptop")["endpoint_id"]
    restarted = endpoints.run("restart", "laptop")
    assert restarted.returncode == 0, restarted.stderr
    endpoints.remember("laptop")
    second = int(endpoints.pid_file("laptop").read_text())
    assert second != first and "stopped" in restarted.stdout and "online" in restarted.stdout
    assert online(api, endpoint_id) and endpoints.registration("laptop")["endpoint_id"] == endpoint_id

    refused = endpoints.run("delete", "laptop")
    assert refused.returncode == 1 and "--yes" in refused.stderr and endpoints.folder("laptop").exists()
    deleted = endpoints.run("delete", "laptop", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not endpoints.folder("laptop").exists()
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE
    assert "no endpoints configured" in endpoints.run("list").stdout
    restart_gone = endpoints.run("restart", "laptop")
    assert restart_gone.returncode == 1 and "no endpoint named 'laptop'" in restart_gone.stderr
