"""Fixtures that start real SMTP and HTTP servers on 127.0.0.1 (see servers.py)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from notifications.resources import Resources, lifespan
from tests.notifications.servers import (
    ENV_VARS,
    HttpServer,
    QuietHTTPServer,
    SmtpServer,
    free_port,
    handler_for,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts unconfigured, whatever the developer's shell exports."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def resources() -> AsyncIterator[Resources]:
    """The app's shared clients, as `runtime serve` opens them for a process."""
    async with lifespan() as opened:
        yield opened


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """Parametrize indirectly with {"credentials": (user, password)} to accept a login.

    AUTH is offered without TLS but not required (aiosmtpd warns about requiring it
    without TLS); a client that does log in must use the right credentials.
    """
    options: dict[str, Any] = getattr(request, "param", {})
    server = SmtpServer(port=free_port(), credentials=options.get("credentials"))
    controller = Controller(
        server,
        hostname="127.0.0.1",
        port=server.port,
        authenticator=server.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    httpd = QuietHTTPServer(("127.0.0.1", 0), handler_for(server))
    server.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
