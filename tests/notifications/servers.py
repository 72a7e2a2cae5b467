"""Real servers on 127.0.0.1 for the notification handlers to talk to, and a JobContext.

`SmtpServer` is an aiosmtpd handler that records what it receives; `HttpServer` is the
state behind a stdlib HTTP server that records every request and answers with what the
test scripted. The fixtures that start them are in conftest.py.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from notifications.resources import Resources
from runtime.engine.context import JobContext

ENV_VARS = (
    "SMTP_URL",
    "SMTP_FROM",
    "SMS_PROVIDER_URL",
    "SMS_PROVIDER_TOKEN",
    "PUSH_PROVIDER_URL",
    "PUSH_PROVIDER_TOKEN",
    "WHATSAPP_PROVIDER_URL",
    "WHATSAPP_PROVIDER_TOKEN",
)


def free_port() -> int:
    """A port nothing listens on (for the servers, and for "connection refused" tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return cast(int, probe.getsockname()[1])


def job_context(resources: Resources, channel: str, job_id: str = "job-1") -> JobContext[Resources]:
    """Logs go to `tests.notifications.<channel>`, for caplog."""
    return JobContext(
        job_id=job_id,
        channel=channel,
        attempt=1,
        logger=logging.getLogger(f"tests.notifications.{channel}"),
        resources=resources,
    )


# --- SMTP -------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: tuple[str, str] | None


@dataclass
class SmtpServer:
    """What the server received, and how it treats recipients and logins."""

    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    """Recipient address -> the SMTP reply that refuses it, e.g. "550 5.1.1 no such user"."""
    credentials: tuple[str, str] | None = None
    """When set, the server accepts AUTH with exactly these (and no other)."""

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        assert envelope.mail_from is not None
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        login = session.auth_data
        self.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                login=(login.login.decode(), login.password.decode())
                if isinstance(login, LoginPassword)
                else None,
            )
        )
        return "250 Message accepted for delivery"

    def authenticate(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        given = (auth_data.login.decode(), auth_data.password.decode())
        return AuthResult(success=given == self.credentials, handled=False, auth_data=auth_data)


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str


@dataclass
class HttpServer:
    """Answers POSTs with the scripted `post_reply`, GETs from `files`; records both."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    post_reply: Reply = field(default_factory=lambda: Reply(200, b"{}", "application/json"))
    files: dict[str, Reply] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reply_json(self, status: int, body: Any) -> None:
        self.post_reply = Reply(status, json.dumps(body).encode(), "application/json")

    def reply_text(self, status: int, text: str) -> None:
        self.post_reply = Reply(status, text.encode(), "text/plain")

    def serve_file(self, path: str, data: bytes, content_type: str) -> str:
        self.files[path] = Reply(200, data, content_type)
        return self.url(path)

    def answer(self, request: Request) -> Reply:
        self.requests.append(request)
        if request.method == "POST":
            return self.post_reply
        return self.files.get(request.path, Reply(404, b"not found", "text/plain"))


def handler_for(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length),
            )
            reply = server.answer(request)
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

    return Handler


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (a refused download) is not a server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
