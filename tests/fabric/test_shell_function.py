"""ShellFunction on its own (called in this process, as a worker calls it): real commands,
a C program built by the system compiler, walltime, huge output, bad templates."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from fabric.errors import ShellCommandFailed, TemplateKeyMissing
from fabric.functions import ShellFunction, ShellResult, check_call

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    long sum = 0;
    for (int i = 1; i <= n; i++) { sum += i; printf("line %d\n", i); }
    fprintf(stderr, "sum %ld\n", sum);
    return n % 7;
}
"""


@pytest.fixture(scope="module")
def c_program(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A C program compiled here by the system compiler: prints n lines, the sum on
    stderr, exits with n % 7."""
    folder = tmp_path_factory.mktemp("cprog")
    (folder / "count.c").write_text(C_PROGRAM)
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "the tests need a C compiler (cc)"
    subprocess.run([compiler, "-O1", "-o", str(folder / "count"), str(folder / "count.c")], check=True)
    return str(folder / "count")


@pytest.fixture(autouse=True)
def sandbox_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sandboxes"
    monkeypatch.setenv("FABRIC_TASK_SANDBOX_ROOT", str(root))
    return root


def test_a_compiled_program_runs_with_its_arguments_formatted_in(c_program: str) -> None:
    result = ShellFunction("{exe} {n}")(exe=c_program, n=10)
    assert isinstance(result, ShellResult)
    assert result.cmd == f"{c_program} 10"
    assert result.stdout.splitlines() == [f"line {i}" for i in range(1, 11)]
    assert result.stderr == "sum 55\n"
    assert result.returncode == 10 % 7  # a non-zero exit is a result, not an exception
    assert result.exception_name == "subprocess.CalledProcessError"


def test_only_the_last_snippet_lines_are_kept(c_program: str) -> None:
    result = ShellFunction("{exe} 5000", snippet_lines=3)(exe=c_program)
    assert result.stdout == "line 4998\nline 4999\nline 5000\n"
    assert result.returncode == 5000 % 7


def test_raise_on_error_raises_a_typed_error_with_the_exit_status(c_program: str) -> None:
    with pytest.raises(ShellCommandFailed) as caught:
        ShellFunction("{exe} 3", raise_on_error=True)(exe=c_program)
    assert caught.value.returncode == 3 and "sum 6" in caught.value.stderr
    assert ShellFunction("{exe} 7", raise_on_error=True)(exe=c_program).returncode == 0


def test_a_missing_key_is_named_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    shell = ShellFunction("touch {marker} && echo {message} {1}")
    with pytest.raises(TemplateKeyMissing) as caught:
        check_call(shell, (), {"marker": str(marker)})
    assert caught.value.key == "message" and "message" in str(caught.value)
    with pytest.raises(TemplateKeyMissing) as caught:
        shell("a", marker=str(marker), message="hi")  # {1} needs two positional arguments
    assert caught.value.key == "1"
    assert not marker.exists()


def test_a_command_that_does_not_exist_returns_127() -> None:
    result = ShellFunction("no-such-command-anywhere --flag")()
    assert result.returncode == 127
    assert "not found" in result.stderr


def test_walltime_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = ShellFunction("sleep 60 & echo $! > {pid_file}; echo started; sleep 60", walltime=0.5)(
        pid_file=str(pid_file))
    assert result.returncode == 124 and result.exception_name == "subprocess.TimeoutExpired"
    assert result.stdout == "started\n"
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_gigabytes_of_output_are_cut_to_the_snippet_never_held_whole() -> None:
    # 1 GiB through the pipe, no newline at all, then 2 short lines
    result = ShellFunction("head -c 1073741824 /dev/zero; printf '\\nend 1\\nend 2\\n'", snippet_lines=2)()
    assert result.returncode == 0
    assert result.stdout == "end 1\nend 2\n"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak < 512 * 1024 * 1024, f"this process held {peak} bytes at its peak"


def test_each_call_runs_in_its_own_sandbox_folder(sandbox_root: Path) -> None:
    shell = ShellFunction("pwd; echo data > out.txt")
    first, second = shell(), shell()
    assert first.stdout != second.stdout
    for result in (first, second):
        folder = Path(result.stdout.strip())
        assert folder.parent == sandbox_root and (folder / "out.txt").read_text() == "data\n"


def test_whole_output_also_goes_to_named_files() -> None:
    result = ShellFunction("seq 1 100; echo oops >&2", stdout="out.log", stderr="err.log", snippet_lines=1)()
    assert result.stdout == "100\n"
    sandbox = next(Path(os.environ["FABRIC_TASK_SANDBOX_ROOT"]).iterdir())
    assert (sandbox / "out.log").read_text().splitlines() == [str(i) for i in range(1, 101)]
    assert (sandbox / "err.log").read_text() == "oops\n"
