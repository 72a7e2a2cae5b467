"""Connections that send no request, or its head a byte at a time (slowloris), are
closed; a normal keep-alive client is served. A real uvicorn on a loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from litestar import Litestar, get

from runtime.serve.http_timeouts import HeadTimeoutProtocol
from tests.runtime.conftest import free_port


class QuickHeadTimeout(HeadTimeoutProtocol):
    head_timeout_s = 0.3


@get("/ping")
async def ping() -> str:
    return "pong"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    chosen = free_port()
    config = uvicorn.Config(
        Litestar([ping]), host="127.0.0.1", port=chosen, log_config=None, http=QuickHeadTimeout
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
    yield chosen
    server.should_exit = True
    await task


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the connection (within a generous deadline)."""
    async with asyncio.timeout(10):
        return await reader.read(1024) == b""


async def test_a_silent_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader)
    writer.close()


async def test_a_slowloris_head_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()

    async def trickle() -> None:
        for _ in range(100):
            await asyncio.sleep(0.1)
            writer.write(b"X")
            await writer.drain()

    dripping = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(reader)
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()


async def test_keep_alive_requests_are_served(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(3):
            response = await http.get("/ping")
            assert response.text == "pong"
