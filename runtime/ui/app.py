"""The dashboard at /ui: server-rendered pages (jinja2, autoescaped) with htmx for live
parts, on the serving process's own Litestar app and Client.

    GET  /ui/                                   every channel: counts, rates, failures
    GET  /ui/channels/<name>?state=&job=&error=&since=&until=&cursor=&limit=
    POST /ui/channels/<name>/actions/<action>   a row of actions.CHANNEL_ACTIONS
    GET  /ui/channels/<name>/jobs/<id>          payload, result, every error, timestamps
    POST /ui/channels/<name>/jobs/<id>/actions/<action>   a row of actions.JOB_ACTIONS
    GET  /ui/processes                          live `runtime serve` processes
    GET  /ui/fragments/...                      the parts htmx polls
    GET  /ui/live?channel=                      which channels changed (Server-Sent Events,
                                                from the job events): pages refresh then
    GET|POST /ui/login, POST /ui/logout         with API keys set (session.py)
    GET  /ui/static/...                         htmx, the CSS and the script: no CDN

Every page answers in a bounded number of Redis round trips, whatever the number of jobs
(runtime.engine.browse pages by cursor; stats.py reads counters).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from litestar import MediaType, Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, Cookie, State
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Stream
from litestar.static_files import create_static_files_router

from runtime.engine.channel import Channel
from runtime.engine.client import Client
from runtime.engine.jobs import STATES
from runtime.engine.limits import check_job_id
from runtime.errors import InvalidJobRequest, JobNotFound, JobOperationError, RedisUnavailable
from runtime.sse import change_stream
from runtime.ui.actions import CHANNEL_ACTIONS, JOB_ACTIONS
from runtime.ui.forms import PAGE_SIZES, FieldError, ListQuery, check_next, parse_list_query
from runtime.ui.session import CSRF_FIELD, CSRF_HEADER, KEY_COOKIE, NONCE_COOKIE, Gate, Session
from runtime.ui.stats import FAILURE_WINDOW_MS, RateSampler, StatsCache

__all__ = ["UI_PATH", "build_dashboard"]

logger = logging.getLogger("channelkit.ui")

UI_PATH = "/ui"
STATIC_PATH = f"{UI_PATH}/static"
# Pages refresh when the job events say something changed (GET /ui/live), and on these
# timers too: rates move without events, and a page must recover from a lost stream.
OVERVIEW_POLL_S = 5
JOB_POLL_S = 5
PROCESSES_POLL_S = 5
_STATIC = Path(str(files("runtime.ui") / "static"))
# Pages and fragments: only this origin's scripts and styles, never framed.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_NOTICES: dict[str, str] = {
    **{action.name: action.done for action in CHANNEL_ACTIONS},
    **{action.name: action.done for action in JOB_ACTIONS},
}


def _asset_versions() -> dict[str, str]:
    """A content hash per static file: URLs change when a file does (cache busting)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in _STATIC.iterdir()
        if path.is_file()
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("runtime.ui", "templates"),
        autoescape=True,  # every value is escaped: payloads and errors are data, not markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    versions = _asset_versions()
    env.globals["static"] = lambda name: f"{STATIC_PATH}/{name}?v={versions.get(name, '0')}"
    env.globals["STATES"] = STATES
    env.globals["PAGE_SIZES"] = PAGE_SIZES
    env.filters["pretty"] = _pretty
    env.filters["from_ms"] = _from_ms
    env.filters["event_details"] = _event_details
    env.filters["rate"] = lambda value: "\u2013" if value is None else f"{value:,.1f}/s"
    env.filters["percent"] = lambda value: "\u2013" if value is None else f"{value:.0%}"
    return env


def _from_ms(value: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(value / 1000, UTC) if value > 0 else None
    except (OverflowError, OSError, ValueError):
        return None


def _event_details(data: Mapping[str, Any]) -> str:
    """An event's data in a line: `attempt 2`, `ValueError: no route`, `due in 30 s`."""
    parts: list[str] = []
    if "attempt" in data:
        parts.append(f"attempt {data['attempt']}")
    if isinstance(data.get("error"), Mapping):
        parts.append(f"{data['error'].get('type')}: {data['error'].get('message')}")
    if "stalled" in data:
        parts.append(f"stalled {data['stalled']} time(s)")
    if "progress" in data:
        parts.append(f"progress {json.dumps(data['progress'], ensure_ascii=False)}")
    if "priority" in data:
        parts.append(f"priority {data['priority']}")
    if data.get("held_back"):
        parts.append("held back (RetryAfter or a keyed rate limit)")
    return " · ".join(parts)


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


class Dashboard:
    """The dashboard's state: the channels, the Client, the gate and the templates."""

    def __init__(
        self, client: Client, channels: Sequence[Channel[Any, Any]], api_keys: Sequence[str]
    ) -> None:
        self.client = client
        self.channels = {channel.name: channel for channel in channels}
        self.gate = Gate(api_keys)
        self.env = _environment()
        self.stats = StatsCache(client, RateSampler())

    # -- responses ---------------------------------------------------------------------

    def render(
        self,
        request: Request[Any, Any, State],
        template: str,
        status: int = 200,
        **context: Any,
    ) -> Response[str]:
        session = _session(request)
        body = self.env.get_template(template).render(
            session=session,
            auth_required=self.gate.required,
            ui=UI_PATH,
            path=request.url.path,
            **context,
        )
        return Response(
            body,
            status_code=status,
            media_type=MediaType.HTML,
            headers=_SECURITY_HEADERS,
            cookies=_session_cookies(request, session),
        )

    def problem(
        self, request: Request[Any, Any, State], status: int, title: str, message: str
    ) -> Response[str]:
        template = "_problem.html" if _is_htmx(request) else "problem.html"
        return self.render(request, template, status, title=title, message=message)

    def channel(self, name: str) -> Channel[Any, Any] | None:
        return self.channels.get(name)


def _session(request: Request[Any, Any, State]) -> Session:
    session: Session = request.state["ui_session"]
    return session


def _is_htmx(request: Request[Any, Any, State]) -> bool:
    return request.headers.get("hx-request") == "true"


def _secure(request: Request[Any, Any, State]) -> bool:
    return request.url.scheme == "https"


def _session_cookies(request: Request[Any, Any, State], session: Session) -> list[Cookie]:
    if not session.new_nonce:
        return []
    return [_cookie(request, NONCE_COOKIE, session.nonce)]


def _cookie(request: Request[Any, Any, State], name: str, value: str, **extra: Any) -> Cookie:
    return Cookie(
        key=name,
        value=value,
        path=UI_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        **extra,
    )


def _params(request: Request[Any, Any, State]) -> dict[str, str]:
    return {key: str(value) for key, value in request.query_params.items()}


def _dashboard(request: Request[Any, Any, State]) -> Dashboard:
    dashboard: Dashboard = request.app.state["ui_dashboard"]
    return dashboard


# -- the gate: every route but login and the static files ------------------------------


async def _gate(request: Request[Any, Any, State]) -> Response[Any] | None:
    dashboard = _dashboard(request)
    session = dashboard.gate.session(request.cookies, request.headers.get("authorization"))
    request.state["ui_session"] = session
    if request.route_handler.opt.get("public") or session.authenticated:
        return None
    login = f"{UI_PATH}/login?" + urlencode({"next": request.url.path})
    if _is_htmx(request):
        return Response("", status_code=401, headers={"HX-Redirect": login})
    if request.method != "GET":
        return dashboard.problem(request, 401, "Log in first", "Your session has ended.")
    return Redirect(login, status_code=303)


async def _checked_form(request: Request[Any, Any, State]) -> Mapping[str, Any] | Response[str]:
    """The POSTed form, or the 403 page when its CSRF token is missing or wrong."""
    form = await request.form()
    supplied = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    dashboard = _dashboard(request)
    if not dashboard.gate.csrf_ok(_session(request), str(supplied) if supplied else None):
        return dashboard.problem(
            request,
            403,
            "This form has expired",
            "The form was not sent from this dashboard's page in this browser (its "
            "security token is missing or out of date). Reload the page and try again.",
        )
    return form


# -- pages -------------------------------------------------------------------------------


@get("/login", opt={"public": True})
async def _login_page(request: Request[Any, Any, State]) -> Response[Any]:
    dashboard = _dashboard(request)
    target = check_next(request.query_params.get("next"))
    if not dashboard.gate.required or _session(request).authenticated:
        return Redirect(target, status_code=303)
    return dashboard.render(request, "login.html", next=target, error=None)


@post("/login", opt={"public": True}, status_code=303)
async def _login(request: Request[Any, Any, State]) -> Response[Any]:
    dashboard = _dashboard(request)
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    target = check_next(str(form.get("next") or ""))
    key = str(form.get("key") or "").strip()
    if not key:
        error = FieldError("key", "enter one of the server's API keys")
    elif not dashboard.gate.key_allowed(key):
        error = FieldError("key", "not one of the API keys this server accepts")
    else:
        # A new nonce at login: a token issued before it (maybe to someone else) is void.
        fresh = dashboard.gate.session(request.cookies, None, new_nonce=True)
        response: Response[Any] = Redirect(target, status_code=303)
        response.cookies.extend(
            [_cookie(request, KEY_COOKIE, key), _cookie(request, NONCE_COOKIE, fresh.nonce)]
        )
        return response
    logger.info("dashboard login refused: %s", error.message)
    return dashboard.render(request, "login.html", 401, next=target, error=error)


@post("/logout", status_code=303)
async def _logout(request: Request[Any, Any, State]) -> Response[Any]:
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    response: Response[Any] = Redirect(f"{UI_PATH}/login", status_code=303)
    for name in (KEY_COOKIE, NONCE_COOKIE):
        response.cookies.append(_cookie(request, name, "", max_age=0))
    return response


@get("/", name="ui-overview")
async def _overview(request: Request[Any, Any, State]) -> Response[str]:
    dashboard = _dashboard(request)
    stats = await dashboard.stats.read(list(dashboard.channels.values()))
    return dashboard.render(
        request,
        "overview.html",
        stats=stats,
        poll=OVERVIEW_POLL_S,
        window_min=FAILURE_WINDOW_MS // 60_000,
    )


@get("/fragments/overview")
async def _overview_rows(request: Request[Any, Any, State]) -> Response[str]:
    dashboard = _dashboard(request)
    stats = await dashboard.stats.read(list(dashboard.channels.values()))
    return dashboard.render(request, "_overview_rows.html", stats=stats)


@get("/channels/{channel:str}")
async def _channel_page(request: Request[Any, Any, State], channel: FromPath[str]) -> Response[Any]:
    dashboard = _dashboard(request)
    found = dashboard.channel(channel)
    if found is None:
        return _no_channel(request, channel)
    query, errors = parse_list_query(_params(request))
    status = 422 if errors else 200
    page = None
    missing = ""
    if not errors and query.job_id:
        if await dashboard.client.job(channel, query.job_id) is not None:
            return Redirect(_job_url(channel, query.job_id), status_code=303)
        missing, status = query.job_id, 404
    elif not errors:
        try:
            page = await dashboard.client.jobs_page(
                channel, query.state, cursor=query.cursor, limit=query.limit, where=query.where
            )
        except InvalidJobRequest as error:
            field, _, message = str(error).partition(": ")
            errors, status = [FieldError(field, message)], 422
    stats = (await dashboard.stats.read([found]))[0]
    notice = _notice(request)
    return dashboard.render(
        request,
        "channel.html",
        status,
        channel=found,
        stats=stats,
        query=query,
        errors=errors,
        page=page,
        missing=missing,
        notice=notice,
        actions=[action for action in CHANNEL_ACTIONS if action.shown(stats)],
        next_url=_next_url(channel, query, page.next_cursor) if page else None,
        first_url=_list_url(channel, query, None) if query.cursor else None,
    )


@get("/fragments/channels/{channel:str}/counts")
async def _channel_counts(
    request: Request[Any, Any, State], channel: FromPath[str]
) -> Response[str]:
    dashboard = _dashboard(request)
    found = dashboard.channel(channel)
    if found is None:
        return _no_channel(request, channel)
    stats = (await dashboard.stats.read([found]))[0]
    state = request.query_params.get("state")
    return dashboard.render(
        request,
        "_channel_counts.html",
        channel=found,
        stats=stats,
        state=state if state in STATES else None,
        # the paused tag and the actions follow the counts (htmx swaps them out of band)
        oob=True,
        actions=[action for action in CHANNEL_ACTIONS if action.shown(stats)],
    )


@post("/channels/{channel:str}/actions/{action:str}", status_code=303)
async def _channel_action(
    request: Request[Any, Any, State], channel: FromPath[str], action: FromPath[str]
) -> Response[Any]:
    dashboard = _dashboard(request)
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    if dashboard.channel(channel) is None:
        return _no_channel(request, channel)
    row = next((row for row in CHANNEL_ACTIONS if row.name == action), None)
    if row is None:
        return dashboard.problem(request, 404, "No such action", f"No action {action!r}.")
    count = await row.run(dashboard.client, channel)
    dashboard.stats.forget()
    logger.info("dashboard: %s on %s: %d job(s)", row.name, channel, count)
    state = "failed"
    target = f"{UI_PATH}/channels/{channel}?" + urlencode(
        {"state": state, "notice": row.name, "count": count}
    )
    return Redirect(target, status_code=303)


@get("/channels/{channel:str}/jobs/{job_id:str}")
async def _job_page(
    request: Request[Any, Any, State], channel: FromPath[str], job_id: FromPath[str]
) -> Response[Any]:
    dashboard = _dashboard(request)
    if dashboard.channel(channel) is None:
        return _no_channel(request, channel)
    try:
        check_job_id(job_id)
    except InvalidJobRequest as error:
        return dashboard.problem(request, 422, "Not a job id", str(error))
    job = await dashboard.client.job(channel, job_id)
    if job is None:
        return dashboard.problem(
            request,
            404,
            "No such job",
            f"{JobNotFound(channel, job_id)}. It was never enqueued, or retention or a "
            "discard removed it.",
        )
    template = "_job.html" if _is_htmx(request) else "job.html"
    return dashboard.render(
        request,
        template,
        channel=dashboard.channels[channel],
        job=job,
        events=await dashboard.client.job_events(channel, job_id),
        events_kept=dashboard.channels[channel].keep.events,
        actions=[action for action in JOB_ACTIONS if action.shown(job)],
        notice=_notice(request),
        poll=JOB_POLL_S,
    )


@post("/channels/{channel:str}/jobs/{job_id:str}/actions/{action:str}", status_code=303)
async def _job_action(
    request: Request[Any, Any, State],
    channel: FromPath[str],
    job_id: FromPath[str],
    action: FromPath[str],
) -> Response[Any]:
    dashboard = _dashboard(request)
    form = await _checked_form(request)
    if isinstance(form, Response):
        return form
    if dashboard.channel(channel) is None:
        return _no_channel(request, channel)
    row = next((row for row in JOB_ACTIONS if row.name == action), None)
    if row is None:
        return dashboard.problem(request, 404, "No such action", f"No action {action!r}.")
    try:
        check_job_id(job_id)
        await row.run(dashboard.client, channel, job_id)
        dashboard.stats.forget()
    except InvalidJobRequest as error:
        return dashboard.problem(request, 422, "Not a job id", str(error))
    except JobOperationError as error:
        status = 404 if isinstance(error, JobNotFound) else 409
        return dashboard.problem(request, status, f"Not done: {row.label}", str(error))
    logger.info("dashboard: %s job %s of %s", row.name, job_id, channel)
    if row.name == "discard":
        target = f"{UI_PATH}/channels/{channel}?" + urlencode({"notice": row.name, "count": 1})
    else:
        target = _job_url(channel, job_id) + "?" + urlencode({"notice": row.name})
    return Redirect(target, status_code=303)


@get("/processes")
async def _processes_page(request: Request[Any, Any, State]) -> Response[str]:
    dashboard = _dashboard(request)
    processes = await dashboard.client.processes()
    return dashboard.render(request, "processes.html", processes=processes, poll=PROCESSES_POLL_S)


@get("/live")
async def _live(request: Request[Any, Any, State]) -> Response[Any]:
    """Which channels changed, as they change (runtime.sse.change_stream): the overview
    watches every channel, a channel or job page its own."""
    dashboard = _dashboard(request)
    wanted = request.query_params.get("channel")
    if wanted is not None and dashboard.channel(wanted) is None:
        return _no_channel(request, wanted)
    names = [wanted] if wanted is not None else list(dashboard.channels)
    if names:  # Redis down: a 503 now, not a stream that never says anything
        await dashboard.client.event_hub.reader(names[0]).latest()
    return Stream(
        change_stream(dashboard.client, names),
        media_type="text/event-stream",
        headers={**_SECURITY_HEADERS, "X-Accel-Buffering": "no"},
    )


@get("/fragments/processes")
async def _processes_rows(request: Request[Any, Any, State]) -> Response[str]:
    dashboard = _dashboard(request)
    processes = await dashboard.client.processes()
    return dashboard.render(request, "_processes_rows.html", processes=processes)


# -- helpers -----------------------------------------------------------------------------


def _no_channel(request: Request[Any, Any, State], channel: str) -> Response[str]:
    dashboard = _dashboard(request)
    known = ", ".join(sorted(dashboard.channels)) or "none"
    return dashboard.problem(
        request, 404, "No such channel", f"There is no channel {channel!r} (known: {known})."
    )


def _job_url(channel: str, job_id: str) -> str:
    from urllib.parse import quote

    return f"{UI_PATH}/channels/{quote(channel)}/jobs/{quote(job_id, safe='')}"


def _list_url(channel: str, query: ListQuery, cursor: str | None) -> str:
    params = {"state": query.state, "limit": str(query.limit)}
    for name, value in (
        ("error", query.error_type),
        ("since", query.since_text),
        ("until", query.until_text),
    ):
        if value:
            params[name] = value
    if query.since_text or query.until_text:
        params["tz"] = str(query.tz_minutes)
    if cursor:
        params["cursor"] = cursor
    return f"{UI_PATH}/channels/{channel}?" + urlencode(params)


def _next_url(channel: str, query: ListQuery, cursor: str | None) -> str | None:
    return _list_url(channel, query, cursor) if cursor else None


def _notice(request: Request[Any, Any, State]) -> str | None:
    """The message of the action that redirected here (only those of the tables)."""
    template = _NOTICES.get(str(request.query_params.get("notice", "")))
    if template is None:
        return None
    count = str(request.query_params.get("count", ""))
    return template.replace("{count}", count if count.isdigit() else "?")


def _on_redis_unavailable(
    request: Request[Any, Any, State], error: RedisUnavailable
) -> Response[str]:
    logger.warning("dashboard page answered 503: %s", error)
    if "ui_session" not in request.state:
        request.state["ui_session"] = _dashboard(request).gate.session(request.cookies, None)
    return _dashboard(request).problem(
        request,
        503,
        "Redis is unavailable",
        f"{error}. The page will work again as soon as Redis answers.",
    )


_ROUTES: list[HTTPRouteHandler] = [
    _login_page,
    _login,
    _logout,
    _overview,
    _overview_rows,
    _channel_page,
    _channel_counts,
    _channel_action,
    _job_page,
    _job_action,
    _processes_page,
    _processes_rows,
    _live,
]


def build_dashboard(
    client: Client, channels: Sequence[Channel[Any, Any]], api_keys: Sequence[str]
) -> tuple[list[Router], dict[str, Any]]:
    """The dashboard's routers (pages and static files) and the app state they read:
    hand both to the Litestar app (runtime.http.app.build_http_app's `extra_routes` and
    `extra_state`)."""
    dashboard = Dashboard(client, channels, api_keys)
    pages = Router(
        path=UI_PATH,
        route_handlers=[*_ROUTES],
        before_request=_gate,
        include_in_schema=False,
        exception_handlers={RedisUnavailable: _on_redis_unavailable},
    )
    static = create_static_files_router(
        path=STATIC_PATH,
        directories=[_STATIC],
        name="ui-static",
        cache_control=CacheControlHeader(max_age=86_400, public=True),
        include_in_schema=False,
    )
    return [pages, static], {"ui_dashboard": dashboard}
