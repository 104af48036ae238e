"""The progress bar: shown when asked (or when someone watches), silent otherwise."""

from __future__ import annotations

import pytest

from sdk.progress import Progress, watched


def test_a_disabled_bar_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(False)
    progress.add_submitted(10)
    progress.add_done(10)
    progress.close()
    assert capsys.readouterr().err == ""
    assert (progress.total, progress.done) == (0, 0)


def test_an_enabled_bar_counts_done_out_of_submitted(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(True, "tasks", delay=0)
    progress.add_submitted(3)
    progress.add_done(2)
    progress.add_submitted(1)
    progress.add_done(2)
    progress.close()
    err = capsys.readouterr().err
    assert "tasks" in err and "4/4" in err
    assert (progress.total, progress.done) == (4, 4)


def test_a_quick_job_shows_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(True, "tasks", delay=60)
    progress.add_submitted(5)
    progress.add_done(5)
    progress.close()
    assert "5/5" not in capsys.readouterr().err


def test_not_watched_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert watched() is False  # pytest captures stderr: a file, not a terminal
    assert Progress().enabled is False
