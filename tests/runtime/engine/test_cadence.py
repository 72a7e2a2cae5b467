"""Tick arithmetic of runtime.engine.cadence, with fixed datetimes: daylight saving time
changes, seconds, intervals, start and end."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from runtime.engine.cadence import Cadence, as_ms, from_ms

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return as_ms(datetime(year, month, day, hour, minute, tzinfo=BERLIN))


def ticks(cadence: Cadence, after: int, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        tick = cadence.next_after(after)
        assert tick is not None
        found.append(from_ms(tick))
        after = tick
    return found


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_spring_forward_runs_the_skipped_time_once_right_after_the_gap(expression: str) -> None:
    # 2026-03-29: Berlin's clocks go from 02:00 to 03:00; 02:30 does not exist that day.
    cadence = Cadence(cron=expression, timezone="Europe/Berlin")
    found = ticks(cadence, berlin(2026, 3, 28, 12), 3)
    assert found == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, right after the gap
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_fall_back_runs_the_repeated_time_once(expression: str) -> None:
    # 2026-10-25: 02:00-03:00 happens twice in Berlin (CEST, then CET); one run, the first.
    cadence = Cadence(cron=expression, timezone="Europe/Berlin")
    found = ticks(cadence, berlin(2026, 10, 24, 12), 3)
    assert found == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),  # 02:30 CET, the next day
        datetime(2026, 10, 27, 1, 30, tzinfo=UTC),
    ]
    # Asked from inside the repeated hour, the second 02:30 is not a tick either.
    assert cadence.next_after(berlin(2026, 10, 25, 2, 45)) == as_ms(found[1])


def test_a_sub_hourly_cron_follows_real_time_through_the_repeated_hour() -> None:
    cadence = Cadence(cron="*/30 * * * *", timezone="Europe/Berlin")
    found = ticks(cadence, berlin(2026, 10, 25, 1, 50), 5)
    assert [t.astimezone(BERLIN).strftime("%H:%M%z") for t in found] == [
        "02:00+0200",
        "02:30+0200",
        "02:00+0100",
        "02:30+0100",
        "03:00+0100",
    ]


def test_the_latest_tick_at_a_moment_agrees_with_the_forward_walk_across_dst() -> None:
    cadence = Cadence(cron="30 2 * * *", timezone="Europe/Berlin")
    moved = cadence.next_after(berlin(2026, 3, 28, 12))
    assert moved is not None
    assert cadence.latest_at_or_before(moved + 60_000, moved) == moved
    assert cadence.latest_at_or_before(berlin(2026, 4, 2, 12), moved) == berlin(2026, 4, 2, 2, 30)


def test_time_zone_moves_the_tick() -> None:
    utc = Cadence(cron="0 8 * * *")
    tokyo = Cadence(cron="0 8 * * *", timezone="Asia/Tokyo")
    start = as_ms(datetime(2026, 1, 1, tzinfo=UTC))
    assert from_ms(utc.next_after(start) or 0) == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert from_ms(tokyo.next_after(start) or 0) == datetime(2026, 1, 1, 23, tzinfo=UTC)


def test_seconds_field() -> None:
    cadence = Cadence(cron="*/15 * * * * *")
    assert cadence.next_after(0) == 15_000
    assert cadence.next_after(15_000) == 30_000
    assert cadence.next_after(15_001) == 30_000
    assert cadence.latest_at_or_before(59_999, 15_000) == 45_000


def test_every_ticks_on_multiples_of_the_interval_from_start() -> None:
    hourly = Cadence(every_ms=3_600_000)
    assert hourly.next_after(as_ms(datetime(2026, 1, 1, 10, 17, tzinfo=UTC))) == as_ms(
        datetime(2026, 1, 1, 11, tzinfo=UTC)
    )
    offset = Cadence(every_ms=10_000, start_ms=3_000)
    assert offset.next_after(0) == 3_000
    assert offset.next_after(3_000) == 13_000
    assert offset.latest_at_or_before(40_000, 13_000) == 33_000


def test_start_and_end_bound_the_ticks() -> None:
    cadence = Cadence(every_ms=1000, start_ms=10_000, end_ms=12_000)
    assert cadence.next_after(0) == 10_000
    assert cadence.next_after(11_000) == 12_000
    assert cadence.next_after(12_000) is None
    assert cadence.latest_at_or_before(60_000, 10_000) == 12_000


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 * * * *': Bad minute"),
        ({"cron": "* * * *"}, "expected 5 fields"),
        ({"cron": "0 0 31 2 *"}, "bad cron expression"),
        ({"every_ms": 10}, "every: from 1s"),
        ({"cron": "* * * * *", "every_ms": 1000}, "exactly one"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"every_ms": 1000, "start_ms": 5, "end_ms": 1}, "end: before start"),
    ],
)
def test_invalid_definitions_say_what_is_wrong(definition: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("(", r"\(")):
        Cadence(**definition)  # type: ignore[arg-type]
