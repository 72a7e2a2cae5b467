"""The shared resources of the test shop: a greeting and the number of times opened."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class Shop:
    greeting: str
    opened: int


def note(line: str) -> None:
    with open(os.environ["SHOP_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{line}\n")


@asynccontextmanager
async def lifespan() -> AsyncIterator[Shop]:
    mode = os.environ.get("SHOP_RESOURCES", "ok")
    if mode == "raise":
        raise RuntimeError("the shop's database is unreachable")
    if mode == "hang":
        await asyncio.sleep(3600)
    note("enter")
    try:
        yield Shop(greeting="hello", opened=1)
    finally:
        note("exit")
