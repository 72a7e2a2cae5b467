"""The dashboard's form and query fields, checked on the server: each problem is a
message naming its field, shown on the page; nothing unchecked reaches Redis.

A time is what `<input type="datetime-local">` sends (`2026-12-01T09:30`, the browser's
local time) with the browser's offset from UTC in minutes in `tz` (JavaScript's
`getTimezoneOffset()`, which the page's script fills in; without it, UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from runtime.engine.browse import MAX_ERROR_FILTER, JobFilter
from runtime.engine.jobs import STATES, JobState
from runtime.engine.limits import check_job_id
from runtime.errors import InvalidJobRequest

__all__ = ["PAGE_SIZES", "FieldError", "ListQuery", "check_next", "parse_list_query"]

PAGE_SIZES = (10, 25, 50, 100, 200)
MAX_CURSOR = 300
_MAX_TZ_MINUTES = 14 * 60


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A channel page's list: which state, where the page starts, and its filters (as
    typed, to show them back in the form)."""

    state: JobState = "failed"
    cursor: str | None = None
    limit: int = 25
    job_id: str = ""
    error_type: str = ""
    since_text: str = ""
    until_text: str = ""
    tz_minutes: int = 0
    where: JobFilter = field(default_factory=JobFilter)

    @property
    def filtered(self) -> bool:
        return bool(self.error_type or self.since_text or self.until_text)


def _printable(text: str) -> bool:
    return text.isprintable()


def _time(value: str, tz_minutes: int, name: str, errors: list[FieldError]) -> int | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(name, f"not a date and time (YYYY-MM-DDTHH:MM): {value!r}"))
        return None
    if moment.tzinfo is None:
        # getTimezoneOffset() is UTC minus local time, in minutes
        moment = moment.replace(tzinfo=UTC) + timedelta(minutes=tz_minutes)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        errors.append(FieldError(name, f"out of range: {value!r}"))
        return None


def parse_list_query(params: Mapping[str, str]) -> tuple[ListQuery, list[FieldError]]:
    """The list query of a channel page, and every problem with it (the query keeps the
    valid fields and the defaults of the others)."""
    errors: list[FieldError] = []
    state_text = params.get("state", "failed") or "failed"
    state: JobState = "failed"
    if state_text in STATES:
        state = state_text
    else:
        errors.append(FieldError("state", f"one of {', '.join(STATES)}"))

    limit = 25
    limit_text = params.get("limit", "")
    if limit_text:
        if limit_text.isdigit() and int(limit_text) in PAGE_SIZES:
            limit = int(limit_text)
        else:
            errors.append(FieldError("limit", f"one of {', '.join(map(str, PAGE_SIZES))}"))

    cursor = params.get("cursor") or None
    if cursor is not None and (len(cursor) > MAX_CURSOR or not _printable(cursor)):
        errors.append(FieldError("cursor", "not a cursor of this list (start from page one)"))
        cursor = None

    job_id = (params.get("job") or "").strip()
    if job_id:
        try:
            check_job_id(job_id)
        except InvalidJobRequest as error:
            errors.append(FieldError("job", str(error).partition(": ")[2]))
            job_id = ""

    error_type = (params.get("error") or "").strip()
    if len(error_type) > MAX_ERROR_FILTER or not _printable(error_type):
        errors.append(FieldError("error", f"at most {MAX_ERROR_FILTER} printable characters"))
        error_type = ""
    if error_type and state in ("waiting", "active"):
        errors.append(FieldError("error", "filters failed, completed or delayed jobs only"))
        error_type = ""

    tz_minutes = 0
    tz_text = params.get("tz", "")
    if tz_text:
        try:
            tz_minutes = int(tz_text)
        except ValueError:
            tz_minutes = _MAX_TZ_MINUTES + 1
        if abs(tz_minutes) > _MAX_TZ_MINUTES:
            errors.append(FieldError("tz", "a UTC offset in minutes, -840 to 840"))
            tz_minutes = 0

    since_text = (params.get("since") or "").strip()[:40]
    until_text = (params.get("until") or "").strip()[:40]
    since = _time(since_text, tz_minutes, "since", errors)
    until = _time(until_text, tz_minutes, "until", errors)
    if since is not None and until is not None and since > until:
        errors.append(FieldError("until", "must not be before 'since'"))
        since = until = None

    query = ListQuery(
        state=state,
        cursor=cursor,
        limit=limit,
        job_id=job_id,
        error_type=error_type,
        since_text=since_text,
        until_text=until_text,
        tz_minutes=tz_minutes,
        where=JobFilter(error_type=error_type, since_ms=since, until_ms=until),
    )
    return query, errors


def check_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path only (no open redirect)."""
    if (
        target
        and (target == "/ui" or target.startswith("/ui/"))
        and not target.startswith("//")
        and "\\" not in target
        and _printable(target)
        and len(target) <= 2000
    ):
        return target
    return "/ui/"
