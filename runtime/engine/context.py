"""What a handler may learn about the job it runs: the optional second parameter."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, cast

from typing_extensions import TypeVar

__all__ = ["JobContext", "ResourcesFactory"]

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
