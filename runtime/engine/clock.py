"""The wall clock in the unit Redis keys and job records use (ms since the epoch), and
the one decoder of the ids and names Redis replies with."""

from __future__ import annotations

import time

__all__ = ["now_ms", "text"]


def now_ms() -> int:
    return int(time.time() * 1000)


def text(value: bytes | str) -> str:
    """A Redis reply value as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value
