"""What a handler may learn about the job it runs: the optional second parameter."""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["JobContext"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """Passed to handlers that declare a second parameter.

    `attempt` counts from 1. `logger` is bound to the channel, so its lines carry the
    channel name; add the job id yourself when you need it in a message.
    """

    job_id: str
    channel: str
    attempt: int
    logger: logging.Logger
