"""Job ids and delays out of bounds are refused by the Client, before Redis, whichever
path called it (HTTP, gRPC and Python producers all enqueue through it)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from runtime.engine.client import Client
from runtime.engine.limits import MAX_DELAY_MS, MAX_JOB_ID_LENGTH
from runtime.errors import InvalidJobRequest
from tests.runtime.engine.support import CHANNEL, Message


@pytest.mark.parametrize(
    ("job_id", "problem"),
    [
        ("", "1 to 200 characters"),
        ("x" * (MAX_JOB_ID_LENGTH + 1), "1 to 200 characters"),
        ("line\nbreak", "control characters"),
        ("nul\x00", "control characters"),
    ],
)
async def test_a_bad_job_id_is_refused(client: Client, job_id: str, problem: str) -> None:
    with pytest.raises(InvalidJobRequest, match=f"^job_id: .*{problem}"):
        await client.enqueue(CHANNEL, Message(n=1), job_id=job_id)
    assert (await client.counts(CHANNEL)).waiting == 0


@pytest.mark.parametrize("delay_ms", [-1, MAX_DELAY_MS + 1, 10**15, 2**64 - 1])
async def test_a_delay_out_of_bounds_is_refused(client: Client, delay_ms: int) -> None:
    with pytest.raises(InvalidJobRequest, match=r"^delay_ms: 0 to"):
        await client.enqueue(CHANNEL, Message(n=1), delay_ms=delay_ms)
    assert (await client.counts(CHANNEL)).delayed == 0


async def test_ids_and_delays_within_bounds_are_taken(client: Client) -> None:
    payload: BaseModel = Message(n=1)
    job_id = await client.enqueue(CHANNEL, payload, job_id="ünïcode-ok-" + "x" * 150)
    assert (await client.job(CHANNEL, job_id)) is not None
    await client.enqueue(CHANNEL, payload, job_id="later", delay_ms=MAX_DELAY_MS)
    later = await client.job(CHANNEL, "later")
    assert later is not None
    assert later.state == "delayed"
    assert later.due_at is not None
