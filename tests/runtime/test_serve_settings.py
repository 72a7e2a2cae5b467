"""`API_KEYS` that names no key, or an empty one, is refused: it would turn
authentication off (or drop a key) silently."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.errors import ConfigError
from runtime.serve.settings import settings_from
from tests.conftest import ROOT
from tests.runtime.conftest import clean_env, free_port


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_api_keys_naming_no_key_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="names no key: unset API_KEYS"):
        settings_from(environ={"API_KEYS": value})


def test_an_empty_key_between_commas_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty key between commas"):
        settings_from(environ={"API_KEYS": "k1,,k2"})


def test_keys_are_trimmed() -> None:
    assert settings_from(environ={"API_KEYS": " k1 , k2 "}).api_keys == ("k1", "k2")


def test_serve_with_no_key_exits_2_before_starting_anything() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "runtime", "serve"],
        env=clean_env() | {"API_KEYS": ","},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert "API_KEYS=','" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"ENABLE_API": "maybe"}, "ENABLE_API='maybe': expected true or false"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml': expected console or json"),
        ({"SHUTDOWN_TIMEOUT": "-1"}, "SHUTDOWN_TIMEOUT must not be negative"),
        (
            {"WORKER_CHANNELS": "sms,nope"},
            "unknown channel 'nope'; channels declared: email, push, sms, whatsapp",
        ),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(setting: dict[str, str], message: str) -> None:
    """docs/operations.md#settings: a bad value stops the process at start, exit code 2,
    naming the variable. Redis is a port nobody listens on: nothing gets that far."""
    completed = subprocess.run(
        [sys.executable, "-m", "runtime", "serve"],
        cwd=ROOT,
        env=clean_env()
        | {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "HTTP_PORT": "0", "GRPC_PORT": "0"}
        | setting,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert message in lines[0]
