"""The test shop's handler: greets with the shared resources' greeting."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from runtime import JobContext
from shop.resources import Shop, note


class Named(Protocol):
    @property
    def name(self) -> str: ...


async def greet(payload: Named, context: JobContext[Shop]) -> dict[str, Any]:
    await asyncio.sleep(0.2)  # still running when the stop signal arrives
    note(f"job {context.job_id}")
    shop = context.resources
    return {"text": f"{shop.greeting} {payload.name}", "opened": shop.opened}
