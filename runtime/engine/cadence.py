"""When a schedule ticks: a cron expression or a fixed interval, in a time zone, between
an optional start and end. Pure arithmetic on milliseconds since the epoch; no Redis.

Cron expressions are parsed and walked by cronsim (the library Healthchecks.io runs on):
5 fields, or 6 with seconds first (`*/15 * * * * *`), as BullMQ's cron-parser reads them.
Time zones are IANA names from the standard library's zoneinfo.

Daylight saving time follows Debian's cron, as cronsim does: a job at a fixed time that
falls into the hour skipped in spring runs right after the skip (02:30 in
Europe/Berlin on the last Sunday of March runs at 03:00); in autumn, when 02:00 to 03:00
happens twice, it runs once, at the first. Expressions finer than an hour (`*/20 * * *
*`) follow real time through both changes. cronsim applies that rule to 5-field
expressions only; a 6-field expression whose seconds field is one number is evaluated
here as its 5-field form plus that many seconds, so `0 30 2 * * *` and `30 2 * * *`
tick alike.

`every` ticks are multiples of the interval counted from `start` (the Unix epoch without
one): `every: 1h` ticks on the hour, the same instants in every process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["MAX_EVERY_MS", "MIN_EVERY_MS", "Cadence", "check_cron", "check_timezone"]

MIN_EVERY_MS = 1000  # the scheduler's resolution: ticks are whole seconds apart at least
MAX_EVERY_MS = 366 * 24 * 3600 * 1000

_FIXED_SECOND = frozenset(str(second) for second in range(60))


def check_timezone(name: str) -> ZoneInfo:
    """The zone named `name`; ValueError naming the problem when there is none."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from None


def check_cron(expression: str) -> None:
    """ValueError saying what is wrong with `expression` (cronsim's reason)."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"bad cron expression {expression!r}: expected 5 fields (minute hour day month "
            f"weekday) or 6 (seconds first), got {len(fields)}"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        raise ValueError(f"bad cron expression {expression!r}: {error}") from None


@dataclass(frozen=True, slots=True)
class Cadence:
    """Exactly one of `cron` and `every_ms`. Ticks before `start_ms` or after `end_ms`
    (inclusive bounds, ms since the epoch) do not happen."""

    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_ms is None):
            raise ValueError("cron, every: give exactly one of the two")
        if self.cron is not None:
            check_cron(self.cron)
        if self.every_ms is not None and not MIN_EVERY_MS <= self.every_ms <= MAX_EVERY_MS:
            raise ValueError(
                f"every: from 1s to 366d ({MIN_EVERY_MS} to {MAX_EVERY_MS} ms); "
                f"got {self.every_ms} ms"
            )
        check_timezone(self.timezone)
        if self.start_ms is not None and self.end_ms is not None and self.end_ms < self.start_ms:
            raise ValueError("end: before start")

    def next_after(self, after_ms: int) -> int | None:
        """The first tick strictly after `after_ms`; None when there is none (past `end`)."""
        if self.start_ms is not None and after_ms < self.start_ms:
            after_ms = self.start_ms - 1
        tick = self._every_after(after_ms) if self.every_ms else self._cron_after(after_ms)
        if tick is None or (self.end_ms is not None and tick > self.end_ms):
            return None
        return tick

    def latest_at_or_before(self, at_ms: int, not_before_ms: int) -> int:
        """The last tick at or before `at_ms`, given that `not_before_ms` (<= at_ms) is one."""
        if self.end_ms is not None:
            at_ms = min(at_ms, self.end_ms)
        if self.every_ms:
            origin = self.start_ms or 0
            return max(not_before_ms, origin + (at_ms - origin) // self.every_ms * self.every_ms)
        latest = self._cron_at_or_before(at_ms)
        # Reverse iteration near a DST change may land before a tick the forward walk
        # produced (the moved 02:30): the forward tick is the one that counts.
        return max(latest, not_before_ms) if latest is not None else not_before_ms

    def _every_after(self, after_ms: int) -> int:
        assert self.every_ms is not None
        origin = self.start_ms or 0
        steps = (after_ms - origin) // self.every_ms + 1
        return origin + steps * self.every_ms

    def _zone_time(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(self.timezone))

    def _split(self) -> tuple[str, int]:
        """(expression cronsim reads, seconds to add to each of its ticks)."""
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) == 6 and fields[0] in _FIXED_SECOND:
            return " ".join(fields[1:]), int(fields[0])
        return self.cron, 0

    def _cron_after(self, after_ms: int) -> int | None:
        expression, offset_s = self._split()
        # cronsim starts strictly after whole seconds: shift by the fixed seconds, and
        # round a fractional time down (a tick at that very second is not "after").
        start = self._zone_time((after_ms // 1000 - offset_s) * 1000)
        try:
            found = next(CronSim(expression, start))
        except StopIteration:
            return None
        return int(found.timestamp()) * 1000 + offset_s * 1000

    def _cron_at_or_before(self, at_ms: int) -> int | None:
        expression, offset_s = self._split()
        # One second past: reverse iteration starts strictly before its start.
        start = self._zone_time((at_ms // 1000 - offset_s + 1) * 1000)
        try:
            found = next(CronSim(expression, start, reverse=True))
        except StopIteration:
            return None
        return int(found.timestamp()) * 1000 + offset_s * 1000


def as_ms(moment: datetime) -> int:
    """An aware datetime as ms since the epoch."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
