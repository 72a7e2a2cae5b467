"""What every job of a process shares: one pooled HTTP client per provider, one SMTP pool.

channels.yaml names `lifespan` as the app's resources (`resources:
notifications.resources:lifespan`): `runtime serve` enters it once before any job runs and
leaves it after the last one, and each handler reaches the `Resources` it yields as
`context.resources`. A push or WhatsApp job then reuses a kept-alive connection to its
provider instead of paying a new TCP (and TLS) handshake (`make bench`: resources_pool).

Provider settings are still read from the environment when a job runs (see
`notifications.settings`); a client or connection is made the first time a provider is
used and kept until the process stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiosmtplib
import httpx

from notifications.settings import ProviderSettings, SmtpSettings

__all__ = ["HttpClients", "Resources", "SmtpPool", "lifespan"]

SMTP_POOL_SIZE = 4  # idle SMTP connections kept per server


class HttpClients:
    """One `httpx.AsyncClient` (a connection pool with keep-alive) per provider."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, float], httpx.AsyncClient] = {}

    def for_provider(self, provider: ProviderSettings) -> httpx.AsyncClient:
        key = (provider.name, provider.timeout)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.AsyncClient(timeout=provider.timeout)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(client.aclose() for client in clients))


class SmtpPool:
    """Connected, logged-in SMTP clients per server, reused across jobs.

    `connection(settings)` lends one (connecting when none is idle) and takes it back
    when the block ends cleanly; a block that raises closes its connection, so a
    half-finished transaction is never reused. A kept connection that the server closed
    while idle is noticed by `is_connected` or by NOOP, and replaced.
    """

    def __init__(self, size: int = SMTP_POOL_SIZE) -> None:
        self._size = size
        self._idle: dict[SmtpSettings, list[aiosmtplib.SMTP]] = {}

    @asynccontextmanager
    async def connection(self, settings: SmtpSettings) -> AsyncIterator[aiosmtplib.SMTP]:
        smtp = await self._take(settings)
        try:
            yield smtp
        except BaseException:
            await _close(smtp)
            raise
        idle = self._idle.setdefault(settings, [])
        if len(idle) < self._size and smtp.is_connected:
            idle.append(smtp)
        else:
            await _close(smtp)

    async def _take(self, settings: SmtpSettings) -> aiosmtplib.SMTP:
        idle = self._idle.get(settings, [])
        while idle:
            smtp = idle.pop()
            if smtp.is_connected:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    await _close(smtp)
                    continue
                return smtp
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.use_tls,
            start_tls=settings.start_tls,
            timeout=settings.timeout,
        )
        await smtp.connect()
        return smtp

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        await asyncio.gather(*(_close(smtp) for pool in idle.values() for smtp in pool))


async def _close(smtp: aiosmtplib.SMTP) -> None:
    if not smtp.is_connected:
        return
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


@dataclass(frozen=True, slots=True)
class Resources:
    """What `lifespan` yields: handlers declare `context: JobContext[Resources]`."""

    http: HttpClients = field(default_factory=HttpClients)
    smtp: SmtpPool = field(default_factory=SmtpPool)


@asynccontextmanager
async def lifespan() -> AsyncIterator[Resources]:
    """Open the shared clients for the process's life; close them after the last job."""
    resources = Resources()
    try:
        yield resources
    finally:
        await asyncio.gather(resources.http.aclose(), resources.smtp.aclose())
