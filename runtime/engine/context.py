"""What a handler may learn about the job it runs: the optional second parameter."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, cast

from typing_extensions import TypeVar

__all__ = ["MAX_PROGRESS_BYTES", "JobContext", "ResourcesFactory"]

MAX_PROGRESS_BYTES = 4096  # a progress value as JSON: a number or a small object

# What the app's resources factory yields. Covariant with `object` as its default, so a
# handler that declares a bare `JobContext` accepts the `JobContext[Resources]` that the
# generated processor passes, and one that declares `JobContext[Resources]` is checked
# by mypy against what the factory named in channels.yaml yields.
ResourcesT = TypeVar("ResourcesT", covariant=True, default=object)
R = TypeVar("R")

ResourcesFactory: TypeAlias = Callable[[], AbstractAsyncContextManager[R]]
"""`resources:` in channels.yaml: an async context manager factory taking no arguments,
entered once per process before any job runs and exited after the last one."""


@dataclass(frozen=True, slots=True)
class JobContext(Generic[ResourcesT]):
    """Passed to handlers that declare a second parameter.

    `attempt` counts from 1. `logger` is bound to the channel, so its lines carry the
    channel name; add the job id yourself when you need it in a message. `resources` is
    what the app's `resources:` factory yielded (shared by every job of the process), or
    None when channels.yaml names none.
    """

    job_id: str
    channel: str
    attempt: int
    logger: logging.Logger
    resources: ResourcesT = field(default=cast(Any, None))
    progress_writer: Callable[[str], Awaitable[bool]] | None = field(default=None, repr=False)

    async def progress(self, value: float | dict[str, Any]) -> bool:
        """Store how far the job got (a number, e.g. a percentage, or a small JSON object)
        on the job, where status readers see it; the last value wins. False when it was
        not stored: the job was taken over by another process, or it runs outside
        Channelkit's worker (a plain taskiq worker keeps no job record).

        Raises ValueError for anything else, or an object over MAX_PROGRESS_BYTES as JSON.
        """
        if isinstance(value, bool) or not isinstance(value, int | float | dict):
            raise ValueError(f"progress: a number or a JSON object; got {type(value).__name__}")
        try:
            encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"progress: not JSON ({error})") from None
        if len(encoded.encode()) > MAX_PROGRESS_BYTES:
            raise ValueError(
                f"progress: at most {MAX_PROGRESS_BYTES} bytes as JSON; got {len(encoded)}"
            )
        if self.progress_writer is None:
            return False
        return await self.progress_writer(encoded)
