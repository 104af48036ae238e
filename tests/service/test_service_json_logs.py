"""``fabric service start --log-format json``: one JSON object per line, and every line logged
while a request is handled carries that request's id (its reply's ``X-Request-Id``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import poll_until
from tests.support.service import Api


def test_json_lines_carry_the_request_id(tmp_path: Path) -> None:
    data = tmp_path / "service"
    log = open(tmp_path / "service.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "service", "start", "--data-dir", str(data), "--port", "0",
                                "--forwarder-port", "0", "--log-level", "DEBUG", "--log-format", "json",
                                "--exit-with-parent"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        info = poll_until(lambda: (data / "service.json").exists() and json.loads((data / "service.json").read_text()),
                          "the service to listen")
        token = subprocess.run([sys.executable, "-m", "service", "add-user", "ann", "--data-dir", str(data)],
                               check=True, capture_output=True, text=True).stdout.strip()
        api = Api(info["url"], token)
        good = api.get("/v1/auth/whoami")
        bad = api.post("/v1/groups", json_body={"name": 7})
        assert (good.status, bad.status) == (200, 400)
        ids = {good.headers["X-Request-Id"]: "/v1/auth/whoami", bad.headers["X-Request-Id"]: "/v1/groups"}

        def logged() -> list[dict[str, object]]:
            lines = [json.loads(line) for line in (tmp_path / "service.log").read_text().splitlines()
                     if line.startswith("{")]
            return lines if {line.get("request_id") for line in lines} >= set(ids) else []

        lines = poll_until(logged, "both requests' lines")
    finally:
        process.terminate()
        assert process.wait(30) == 0
        log.close()
    text = (tmp_path / "service.log").read_text()
    assert all(line.startswith("{") for line in text.splitlines() if line.strip()), text  # the log: only JSON
    for line in lines:
        assert {"time", "level", "logger", "pid", "message"} <= set(line)
        if line.get("request_id") in ids:
            assert ids[str(line["request_id"])] in str(line["message"])
        else:  # outside any request: no id at all
            assert not any(path in str(line["message"]) for path in ids.values()), line
