"""What enqueueing answers while a Redis Cluster heals: a primary SIGKILLed, its replica
promoted, then the killed node started again (it rejoins as a replica). Enqueues run in a
loop all along, through the HTTP API and through the `Client` itself: every HTTP answer is
202 or 503 with the reason and Retry-After, never a 500; every `Client` error is a
`RedisUnavailable`, never a redis-py exception that escaped the mapping
(runtime.engine.redis_errors); and enqueueing goes on once the cluster is ok again.

The cluster is this test's own (3 primaries, 3 replicas): the session's stays whole.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from generated.models.sms import SmsPayload
from runtime.errors import RedisUnavailable
from runtime.testing import running_app
from tests.redis_topologies import RedisClusterNodes

pytestmark = [pytest.mark.timeout(120)]

LOOPS = 16  # enqueues in flight: half through HTTP, half through the Client
AFTER_S = 3.0  # enqueueing goes on this long after each step of the healing


async def test_enqueue_answers_202_or_503_never_500_while_a_primary_fails_over(
    tmp_path: Path,
) -> None:
    nodes = RedisClusterNodes(tmp_path / "cluster").start()
    try:
        async with running_app(redis_url=nodes.url, enable_grpc=False, enable_workers=False) as app:
            assert app.http is not None
            client = app.client
            victim = nodes.node_of(client.keys("sms").stream)
            answers: Counter[str] = Counter()
            wrong: list[str] = []  # answers that are neither success nor a 503
            reasons: list[str] = []
            stop = asyncio.Event()
            count = 0

            def payload() -> dict[str, str]:
                nonlocal count
                count += 1
                return {"to": "+14155550100", "body": f"failover-{count}"}

            async def over_http(http: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    body = payload()
                    try:
                        response = await http.post(
                            "/channels/sms/jobs",
                            json=body,
                            headers={"Idempotency-Key": f"h-{body['body']}"},
                        )
                    except httpx.TimeoutException:
                        answers["http timed out"] += 1
                        continue
                    answers[f"http {response.status_code}"] += 1
                    if response.status_code == 503:
                        assert response.headers.get("Retry-After") == "1", response.headers
                        reasons.append(response.json()["detail"])
                        await asyncio.sleep(0.05)
                    elif response.status_code != 202:
                        wrong.append(f"HTTP {response.status_code}: {response.text[:300]}")

            async def through_client() -> None:
                while not stop.is_set():
                    try:
                        await client.enqueue("sms", SmsPayload.model_validate(payload()))
                        answers["client ok"] += 1
                    except RedisUnavailable as error:
                        answers["client RedisUnavailable"] += 1
                        reasons.append(str(error))
                        await asyncio.sleep(0.05)
                    except Exception as error:  # the bug this test is for: keep it, go on
                        wrong.append(f"Client: {type(error).__module__}.{error!r}")

            async def accepted_again(within: float) -> float:
                began = time.monotonic()
                while True:
                    ok = answers["http 202"] + answers["client ok"]
                    await asyncio.sleep(0.5)
                    if answers["http 202"] + answers["client ok"] > ok:
                        return time.monotonic() - began
                    assert time.monotonic() - began < within, f"no enqueue accepted: {answers}"

            timeout = httpx.Timeout(10.0)
            async with httpx.AsyncClient(base_url=str(app.http.base_url), timeout=timeout) as http:
                loops = [asyncio.create_task(over_http(http)) for _ in range(LOOPS // 2)]
                loops += [asyncio.create_task(through_client()) for _ in range(LOOPS // 2)]
                try:
                    await accepted_again(10)
                    failover = await asyncio.to_thread(nodes.kill_primary_and_wait, victim)
                    healed_after = await accepted_again(30)
                    await asyncio.sleep(AFTER_S)
                    nodes.restart(victim)  # back as a replica of the promoted node
                    await asyncio.to_thread(nodes.wait_healthy)
                    await asyncio.sleep(AFTER_S)
                    rejoined_after = await accepted_again(30)
                finally:
                    stop.set()
                    await asyncio.gather(*loops, return_exceptions=True)
        print(
            f"\nfailover of {victim.address} (sms's primary): replica promoted after "
            f"{failover:.2f} s, enqueue accepted within {healed_after:.2f} s after that, "
            f"and {rejoined_after:.2f} s after the killed node rejoined; answers "
            f"{dict(answers)}; a 503's reason: {reasons[:1]}"
        )
        assert not wrong, f"{len(wrong)} answer(s) neither success nor 503: {wrong[:5]}"
        assert answers["http 202"], answers
        assert answers["client ok"], answers
        assert all(reason.strip() for reason in reasons), reasons
    finally:
        nodes.stop()
