"""The ``fabric`` command line, run as a real subprocess (and its parser in-process)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fabric
from endpoint.demo import pi_chunk
from fabric import cli

TIMEOUT = 90.0


def fabric_command() -> list[str]:
    """The installed ``fabric`` console script next to this Python, else ``python -m fabric.cli``."""
    script = Path(sys.executable).with_name("fabric")
    if script.exists():
        return [str(script)]
    found = shutil.which("fabric")
    if found:
        return [found]
    return [sys.executable, "-m", "fabric.cli"]


def run_fabric(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*fabric_command(), *args], capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)


def test_help_lists_the_commands() -> None:
    completed = run_fabric("--help")
    assert completed.returncode == 0, completed.stderr
    assert "usage: fabric" in completed.stdout
    assert "endpoint" in completed.stdout


def test_run_local_help_describes_the_options() -> None:
    completed = run_fabric("endpoint", "run-local", "--help")
    assert completed.returncode == 0, completed.stderr
    for option in ("--workers", "--managers", "--tasks", "--samples-per-task"):
        assert option in completed.stdout


def test_version() -> None:
    completed = run_fabric("--version")
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"fabric {fabric.__version__}"


def test_run_local_runs_the_demo() -> None:
    completed = run_fabric("endpoint", "run-local", "--workers", "1", "--tasks", "200")
    assert completed.returncode == 0, completed.stderr
    result = re.search(r"^result: pi ~= (\d+\.\d+) from 200,000 samples in 200 tasks", completed.stdout, re.M)
    assert result is not None, completed.stdout
    assert abs(float(result.group(1)) - 3.14159) < 0.05
    assert re.search(r"^throughput: [\d,]+ tasks/s \(200 tasks in \d+\.\d+ s\)$", completed.stdout, re.M), \
        completed.stdout


@pytest.mark.parametrize("args, message", [
    (["endpoint", "run-local", "--workers", "0"], "--workers: must be at least 1"),
    (["endpoint", "run-local", "--tasks", "many"], "--tasks: expected a whole number"),
    (["endpoint", "run-local", "--no-such-option"], "unrecognized arguments"),
    (["no-such-command"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    completed = run_fabric(*args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_command_without_its_action_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["endpoint"]) == 2
    assert "run-local" in capsys.readouterr().err


def test_pi_chunk_is_deterministic_and_plausible() -> None:
    hits = pi_chunk(7, 10_000)
    assert hits == pi_chunk(7, 10_000)
    assert 0.75 < hits / 10_000 < 0.82


def test_endpoint_lists_its_lifecycle_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["endpoint"]) == 2
    err = capsys.readouterr().err
    for action in ("run-local", "configure", "start", "stop", "list", "status"):
        assert re.search(rf"^\s+{action}\b", err, re.M), err


@pytest.mark.parametrize("action, options", [
    ("configure", ["--service-url", "--workers", "--managers", "--prefetch", "--accelerators", "--cpu-affinity",
                   "--provider", "--force"]),
    ("start", ["--foreground", "--log-level"]),
    ("status", ["--json"]),
])
def test_endpoint_command_help_describes_the_options(capsys: pytest.CaptureFixture[str], action: str,
                                                     options: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["endpoint", action, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: fabric endpoint {action}" in out
    for option in options:
        assert option in out


def test_the_parser_imports_nothing_heavy() -> None:
    """``fabric --help`` stays fast: building the parser imports no role package (endpoint, SDK, service,
    benchmarks)."""
    heavy = ("zmq", "requests", "psutil", "msgpack", "dill", "flask", "interchange", "sdk", "service", "endpoint",
             "benchmarks")
    probe = (f"import sys, fabric.cli; fabric.cli.build_parser(); "
             f"print([m for m in {heavy!r} if m in sys.modules])")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT,
                               check=False, cwd=Path(cli.__file__).resolve().parents[1])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
