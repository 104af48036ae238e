"""``fabric completion bash``: the script, loaded in a real bash, completes commands, actions,
options and endpoint names (``fabric`` run as a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def complete(script: Path, home: Path, *words: str) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    program = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _fabric_complete; "
               f'printf "%s\\n" "${{COMPREPLY[@]}}"')
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True,
                          env={**os.environ, "FABRIC_HOME": str(home)})
    return sorted(filter(None, done.stdout.splitlines()))


def test_bash_completion(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "fabric.cli", "completion", "bash"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    script = tmp_path / "fabric.bash"
    script.write_text(made.stdout)
    (tmp_path / "home" / "endpoints" / "laptop").mkdir(parents=True)
    home = tmp_path / "home"
    assert {"endpoint", "service", "bench", "login", "completion"} <= set(complete(script, home, "fabric", ""))
    assert complete(script, home, "fabric", "endpoint", "st") == ["start", "status", "stop"]
    assert complete(script, home, "fabric", "endpoint", "start", "l") == ["laptop"]
    assert complete(script, home, "fabric", "endpoint", "start", "laptop", "--log-") == ["--log-format",
                                                                                      "--log-level"]
    assert complete(script, home, "fabric", "service", "add") == ["add-user"]
    assert complete(script, home, "fabric", "completion", "") == ["--help", "-h", "bash"]
