"""ShellFunction through a real local endpoint: the worker calls it like any function."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support import TIMEOUT

from fabric.errors import RemoteExecutionError, ShellCommandFailed, TemplateKeyMissing
from fabric.functions import ShellFunction, ShellResult

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]), sum = 0;
    for (long i = 1; i <= n; i++) sum += i * i;
    printf("sum of squares %ld\n", sum);
    return 0;
}
"""


def test_a_compiled_c_program_runs_as_a_task_and_a_missing_key_fails_at_submit(make_endpoint,
                                                                              tmp_path: Path) -> None:
    (tmp_path / "squares.c").write_text(C_PROGRAM)
    subprocess.run([shutil.which("cc") or "gcc", "-o", str(tmp_path / "squares"), str(tmp_path / "squares.c")],
                   check=True)
    endpoint = make_endpoint()
    squares = ShellFunction(f"{tmp_path / 'squares'} {{n}}")
    futures = {n: endpoint.submit(squares, n=n) for n in (1, 10, 1000)}
    for n, future in futures.items():
        result = future.result(TIMEOUT)
        assert isinstance(result, ShellResult)
        assert result.returncode == 0
        assert result.stdout == f"sum of squares {sum(i * i for i in range(1, n + 1))}\n"

    marker = tmp_path / "ran"
    with pytest.raises(TemplateKeyMissing, match="'n'"):
        endpoint.submit(ShellFunction("touch {marker}; echo {n}"), marker=str(marker))
    assert endpoint.submit(ShellFunction("exit 3")).result(TIMEOUT).returncode == 3
    assert endpoint.submit(ShellFunction("no-such-program")).result(TIMEOUT).returncode == 127
    with pytest.raises(RemoteExecutionError) as caught:
        endpoint.submit(ShellFunction("echo bad >&2; exit 2", raise_on_error=True)).result(TIMEOUT)
    assert isinstance(caught.value.exception, ShellCommandFailed) and caught.value.exception.returncode == 2
    assert not marker.exists()
