"""Push jobs/s with the pooled HTTP client of the app's resources vs a client per job.

What a push job does on the wire is `notifications._http.post_json`: one JSON POST to the
provider. The bench starts a local provider stub (uvicorn in a process of its own,
keep-alive on, answering `{"id": ...}`) and sends the same jobs, at the push channel's
concurrency, two ways: through the one `httpx.AsyncClient` that `notifications.resources`
keeps per provider (connections reused), and through a new client per job (a TCP connect
per job: what the handlers did before resources). Ratio = pooled / per job.

    .venv/bin/python bench/resources_pool.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import benchlib
import httpx
from benchlib import Row, Spread

from notifications._http import post_json
from notifications.resources import HttpClients
from notifications.settings import ProviderSettings

CONCURRENCY = 20  # the push channel's concurrency in channels.yaml
_ANSWER = b'{"id": "stub-1"}'


async def _stub(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The provider: reads the body, answers 200 with a message id."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _ANSWER})


def _serve_stub(port: int) -> None:
    import uvicorn

    uvicorn.run(_stub, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=30)


Send = Callable[[int], Awaitable[None]]


async def _rate(send: Send, jobs: int) -> float:
    """Jobs per second for `jobs` sends, CONCURRENCY at a time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(jobs):
        queue.put_nowait(number)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return jobs / (time.perf_counter() - began)


async def _measure(url: str, jobs: int, rounds: int) -> tuple[Spread, Spread]:
    provider = ProviderSettings(name="push provider", url=url, token="bench")
    clients = HttpClients()
    pooled_client = clients.for_provider(provider)

    def body(number: int) -> dict[str, Any]:
        return {"to": f"device-{number}", "title": "Hello", "body": "A push from the bench"}

    async def pooled(number: int) -> None:
        await post_json(pooled_client, provider, body(number), idempotency_key=f"job-{number}")

    async def per_job(number: int) -> None:
        async with httpx.AsyncClient(timeout=provider.timeout) as client:
            await post_json(client, provider, body(number), idempotency_key=f"job-{number}")

    try:
        await _rate(pooled, CONCURRENCY * 5)  # warm both paths up
        await _rate(per_job, CONCURRENCY * 5)
        pooled_rates, per_job_rates = [], []
        for _ in range(rounds):  # interleaved: a slower moment hits both alike
            pooled_rates.append(await _rate(pooled, jobs))
            per_job_rates.append(await _rate(per_job, jobs))
    finally:
        await clients.aclose()
    return Spread.of(pooled_rates), Spread.of(per_job_rates)


def _wait_for_stub(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the provider stub exited with {process.returncode}")
        try:
            httpx.post(url, json={}, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("the provider stub did not start in 20 s")


def run(quick: bool = False, rounds: int | None = None) -> list[Row]:
    rounds = rounds or (3 if quick else 5)
    jobs = 500 if quick else 2000
    port = benchlib.free_port()
    url = f"http://127.0.0.1:{port}/push"
    stub = subprocess.Popen([sys.executable, __file__, "--serve-stub", str(port)])
    try:
        _wait_for_stub(url, stub)
        benchlib.wait_quiet()
        pooled, per_job = asyncio.run(_measure(url, jobs, rounds))
    finally:
        stub.terminate()
        stub.wait(10)
    return [
        Row(
            "resources",
            "push jobs/s, pooled client (resources)",
            pooled.text(),
            f"client per job: {per_job.text()}",
            pooled.median / per_job.median,
            "",
            None,
            f"bench/resources_pool.py: {jobs} POSTs to a local keep-alive provider stub, "
            f"{CONCURRENCY} at a time, median of {rounds} rounds (min-max); "
            "ratio = pooled / client per job (a new httpx client also builds an SSL context, "
            "loading the CA bundle, even for http://)",
        )
    ]


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--serve-stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        _serve_stub(args.serve_stub)
        return
    benchlib.report(run(args.quick, args.rounds), args.json)


if __name__ == "__main__":
    main()
