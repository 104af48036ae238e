"""Where a client finds its service and token: arguments, environment, then ``fabric login``'s file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fabric.errors import ConfigError
from sdk.credentials import Credentials, forget_credentials, resolve, store_credentials, stored_credentials


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FABRIC_TOKEN", raising=False)
    monkeypatch.delenv("FABRIC_SERVICE_URL", raising=False)
    return tmp_path / "home"


def test_nothing_stored_resolves_to_nothing() -> None:
    assert resolve(None, None) == Credentials(None, None)
    assert stored_credentials() == Credentials(None, None)
    assert forget_credentials() is False


def test_stored_credentials_are_private_and_used(home: Path) -> None:
    path = store_credentials("http://svc:1/", "tok.en")
    assert path == home / "credentials.json" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve(None, None) == Credentials("http://svc:1", "tok.en")
    assert resolve("http://svc:1", None) == Credentials("http://svc:1", "tok.en")
    assert forget_credentials() and resolve(None, None) == Credentials(None, None)


def test_arguments_beat_the_environment_which_beats_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    store_credentials("http://file:1", "file.token")
    monkeypatch.setenv("FABRIC_SERVICE_URL", "http://env:1")
    monkeypatch.setenv("FABRIC_TOKEN", "env.token")
    assert resolve(None, None) == Credentials("http://env:1", "env.token")
    assert resolve("http://arg:1", "arg.token") == Credentials("http://arg:1", "arg.token")


def test_a_stored_token_is_never_sent_to_another_service() -> None:
    store_credentials("http://mine:1", "my.token")
    assert resolve("http://elsewhere:2", None) == Credentials("http://elsewhere:2", None)


def test_a_corrupt_file_is_a_clear_error(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "credentials.json").write_text("{not json")
    with pytest.raises(ConfigError, match="fabric login"):
        resolve(None, None)
