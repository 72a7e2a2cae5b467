"""The test shop's handler: greets with the shared resources' greeting.

Types are structural (like tests/runtime/project/probe): mypy checks this file from the
repository, where neither the generated package nor `shop` is importable.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from runtime import JobContext


class Named(Protocol):
    @property
    def name(self) -> str: ...


class Shop(Protocol):
    @property
    def greeting(self) -> str: ...

    @property
    def opened(self) -> int: ...


async def greet(payload: Named, context: JobContext[Shop]) -> dict[str, Any]:
    await asyncio.sleep(0.2)  # still running when the stop signal arrives
    with open(os.environ["SHOP_LOG"], "a", encoding="utf-8") as log:  # noqa: ASYNC230
        log.write(f"job {context.job_id}\n")
    shop = context.resources
    return {"text": f"{shop.greeting} {payload.name}", "opened": shop.opened}
