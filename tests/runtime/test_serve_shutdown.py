"""How `runtime serve` ends: SIGTERM lets a running job finish and acknowledges it,
SIGKILL leaves it pending in Redis, and without REDIS_URL the embedded Redis it started
goes away with it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from runtime.engine.keys import CONSUMER_GROUP
from tests.runtime.conftest import Probe, ServeFactory, Server, events_of, text

pytestmark = pytest.mark.timeout(60)


async def _enqueue_http(server: Server, channel: str, payload: dict[str, object]) -> str:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        response = await http.post(f"/channels/{channel}/jobs", json=payload)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.mark.slow
async def test_sigterm_lets_the_running_job_finish(serve: ServeFactory, probe: Probe) -> None:
    server = await serve()
    await _enqueue_http(server, "slow", {"id": "long", "seconds": 2.0})
    await probe.wait_for(lambda seen: bool(events_of(seen, "start")))

    signalled = time.monotonic()
    code = await server.stop(signal.SIGTERM)
    stopped_after = time.monotonic() - signalled

    assert code == 0, server.output()
    events = await probe.events()
    assert events_of(events, "end") == [("long", server.pid)], events
    assert stopped_after > 1.0, "stopped before the job could have finished"
    assert await probe.pending("slow") == 0
    assert await probe.queued("slow") == 0
    assert "SIGTERM: stopping" in server.output()
    assert "unacknowledged" not in server.output()


async def test_sigkill_leaves_the_running_job_pending(serve: ServeFactory, probe: Probe) -> None:
    server = await serve()
    await _enqueue_http(server, "slow", {"id": "doomed", "seconds": 20.0})
    await probe.wait_for(lambda seen: bool(events_of(seen, "start")))

    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL

    assert not events_of(await probe.events(), "end")
    stream = probe.keys("slow").stream
    entries = await probe.redis.xrange(stream) or []
    assert len(entries) == 1
    pending = await probe.redis.xpending_range(stream, CONSUMER_GROUP, "-", "+", 10)
    assert [item["message_id"] for item in pending] == [entries[0][0]]
    assert pending[0]["times_delivered"] == 1
    assert await probe.pending("slow") == 1


async def test_a_second_signal_exits_at_once_leaving_the_job_pending(
    serve: ServeFactory, probe: Probe
) -> None:
    server = await serve()
    await _enqueue_http(server, "slow", {"id": "stuck", "seconds": 20.0})
    await probe.wait_for(lambda seen: bool(events_of(seen, "start")))

    server.process.send_signal(signal.SIGTERM)
    server.process.send_signal(signal.SIGTERM)  # the same request delivered twice: ignored
    await asyncio.sleep(1.0)
    assert server.process.returncode is None, "a duplicate signal forced the exit"
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    # Bounded well below the job's 20 s: it exited without waiting for the job.
    code = await asyncio.wait_for(server.process.wait(), 15)

    assert code == 1, server.output()
    print(f"exited {time.monotonic() - signalled:.2f} s after the second SIGTERM")
    assert "second SIGTERM: exiting now" in server.output()
    assert not events_of(await probe.events(), "end")
    assert await probe.pending("slow") == 1  # left for another process to take over


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc; Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the ')'.
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _is_redis_server(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_without_redis_url_an_embedded_redis_serves_and_goes_away(
    serve: ServeFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    embedded_url = f"unix://{data_dir / 'redis.sock'}"
    server = await serve(
        {"REDIS_URL": None, "PROBE_REDIS_URL": embedded_url, "PROBE_PREFIX": "probe"},
        args=["--data-dir", str(data_dir)],
    )
    assert "no REDIS_URL: started an embedded Redis" in server.output()
    redis_pids = [pid for pid in _children(server.pid) if _is_redis_server(pid)]
    assert len(redis_pids) == 1, _children(server.pid)

    await _enqueue_http(server, "fast", {"id": "embedded"})
    embedded = Redis.from_url(embedded_url)
    async with embedded:
        deadline = time.monotonic() + 10
        while not (events := await embedded.lrange("probe:events", 0, -1)):
            assert time.monotonic() < deadline, "the job did not run"
            await asyncio.sleep(0.02)
    assert [text(event) for event in events] == [f"fast:embedded:{server.pid}"]

    assert await server.stop(signal.SIGTERM) == 0, server.output()
    assert not _is_redis_server(redis_pids[0]), "the embedded redis-server outlived serve"
    assert (data_dir / "appendonly.aof").exists() or any(data_dir.glob("appendonly*"))
