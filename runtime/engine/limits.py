"""Bounds on what a producer may ask for, checked where every enqueue path meets (the
Client), so HTTP, gRPC and Python producers refuse the same input the same way.

A job id is part of Redis key names and of log lines: 1 to MAX_JOB_ID_LENGTH characters,
none of them a control character (a newline or a NUL would forge log lines and break
tools). A delay beyond MAX_DELAY_MS is almost surely a unit mistake (microseconds for
milliseconds); it would also put a due time past what dates can show. A priority runs from 1 (starts
first) to 10; a timeout from 1 ms to a day.
"""

from __future__ import annotations

import re

from runtime.errors import InvalidJobRequest

__all__ = [
    "DEFAULT_EVENTS_MAX",
    "DEFAULT_PRIORITY",
    "HIGHEST_PRIORITY",
    "LOWEST_PRIORITY",
    "MAX_DELAY_MS",
    "MAX_EVENTS_MAX",
    "MAX_JOB_ID_LENGTH",
    "MAX_TIMEOUT_MS",
    "check_delay",
    "check_job_id",
    "check_priority",
    "check_timeout",
]

MAX_JOB_ID_LENGTH = 200
MAX_DELAY_MS = 366 * 24 * 3600 * 1000  # a year (and a day)
MAX_TIMEOUT_MS = 24 * 3600 * 1000
# A job stored without a priority (before priorities existed) counts as DEFAULT_PRIORITY.
HIGHEST_PRIORITY, LOWEST_PRIORITY, DEFAULT_PRIORITY = 1, 10, 5
# Job events a channel's event stream keeps (channels.yaml keep.events). The scripts use
# the same default until a process has written the channel's own (lua/include/events.lua).
DEFAULT_EVENTS_MAX = 10_000
MAX_EVENTS_MAX = 10_000_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_job_id(job_id: str) -> None:
    if not 1 <= len(job_id) <= MAX_JOB_ID_LENGTH:
        raise InvalidJobRequest(f"job_id: 1 to {MAX_JOB_ID_LENGTH} characters; got {len(job_id)}")
    if _CONTROL.search(job_id):
        raise InvalidJobRequest("job_id: control characters (newline, NUL, ...) are not allowed")


def check_delay(delay_ms: int) -> None:
    if not 0 <= delay_ms <= MAX_DELAY_MS:
        raise InvalidJobRequest(f"delay_ms: 0 to {MAX_DELAY_MS} (a year); got {delay_ms}")


def check_priority(priority: int) -> None:
    if not HIGHEST_PRIORITY <= priority <= LOWEST_PRIORITY:
        raise InvalidJobRequest(
            f"priority: {HIGHEST_PRIORITY} (starts first) to {LOWEST_PRIORITY}; got {priority}"
        )


def check_timeout(timeout_ms: int) -> None:
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise InvalidJobRequest(f"timeout_ms: 1 to {MAX_TIMEOUT_MS} (a day); got {timeout_ms}")
