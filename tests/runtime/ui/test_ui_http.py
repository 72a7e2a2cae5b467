"""The dashboard over real HTTP (a served app, real Redis): the gate and its cookies,
CSRF on every POST, server-side validation with messages, escaping, the process registry
over HTTP and in `runtime workers`, and the setting that turns the dashboard off."""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import subprocess
import sys
from pathlib import Path

import httpx
import uvicorn
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.metrics import Metrics
from runtime.http.app import build_http_app
from runtime.ui import build_dashboard
from tests.runtime.conftest import clean_env, free_port
from tests.runtime.ui.conftest import API_KEY, CHANNEL, ServeDashboard, csrf_of, logged_in

STATIC = Path(__file__).resolve().parents[3] / "runtime" / "ui" / "static"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
XSS = '<script>alert("payload")</script><img src=x onerror=alert(1)>'


def test_the_vendored_htmx_is_the_recorded_release() -> None:
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == HTMX_SHA256
    assert "htmx 2.0.11" in (STATIC / "VENDORED.md").read_text()


async def test_login_sets_strict_httponly_cookies_and_a_wrong_key_is_refused(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    async with httpx.AsyncClient(base_url=app.server.http_url) as http:
        first = await http.get("/ui/")
        assert first.status_code == 303
        assert first.headers["location"] == "/ui/login?next=%2Fui"
        login = await http.get("/ui/login")
        assert login.status_code == 200
        token = csrf_of(login.text)
        wrong = await http.post("/ui/login", data={"key": "nope", "csrf_token": token})
        assert wrong.status_code == 401
        assert "not one of the API keys this server accepts" in wrong.text
        empty = await http.post("/ui/login", data={"key": "", "csrf_token": token})
        assert "enter one of the server" in empty.text
        forged = await http.post("/ui/login", data={"key": API_KEY, "csrf_token": "0" * 64})
        assert forged.status_code == 403
        right = await http.post(
            "/ui/login", data={"key": API_KEY, "csrf_token": token, "next": "//evil.example/"}
        )
        assert right.status_code == 303
        assert right.headers["location"] == "/ui/"  # no open redirect
        cookies = right.headers.get_list("set-cookie")
        assert len(cookies) == 2
        for cookie in cookies:
            lowered = cookie.lower()
            assert "httponly" in lowered
            assert "samesite=strict" in lowered
            assert "path=/ui" in lowered
        page = await http.get("/ui/")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
    async with httpx.AsyncClient(base_url=app.server.http_url) as bearer:
        page = await bearer.get("/ui/", headers={"authorization": f"Bearer {API_KEY}"})
        assert page.status_code == 200


async def test_every_post_needs_this_sessions_csrf_token(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    await app.break_handlers(True)
    job = await app.enqueue({"id": "a"})
    await app.wait_state(job, "failed")
    async with logged_in(app.server.http_url) as http, logged_in(app.server.http_url) as other:
        page = await http.get(f"/ui/channels/{CHANNEL}/jobs/{job}")
        token = csrf_of(page.text)
        others_token = csrf_of((await other.get("/ui/")).text)
        action = f"/ui/channels/{CHANNEL}/jobs/{job}/actions/retry"
        assert (await http.post(action)).status_code == 403
        refused = await http.post(action, data={"csrf_token": others_token})
        assert refused.status_code == 403
        assert "form has expired" in refused.text
        assert (await app.client.job(CHANNEL, job)).state == "failed"  # type: ignore[union-attr]
        await app.break_handlers(False)
        done = await http.post(action, data={"csrf_token": token})
        assert done.status_code == 303
        await app.wait_state(job, "completed")
        again = await http.post(action, data={"csrf_token": token})
        assert again.status_code == 409
        assert "completed" in again.text


async def test_markup_in_a_payload_and_an_error_is_shown_as_text(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    await app.break_handlers(True)
    job = await app.enqueue({"id": "x", "note": XSS})
    await app.wait_state(job, "failed")
    async with logged_in(app.server.http_url) as http:
        for url in (f"/ui/channels/{CHANNEL}/jobs/{job}", f"/ui/channels/{CHANNEL}?state=failed"):
            page = await http.get(url)
            assert page.status_code == 200
            assert "<script>alert" not in page.text
            assert "<img src=x" not in page.text
            assert html.escape("could not deliver <script>alert(", quote=False) in page.text


async def test_fields_are_checked_on_the_server_with_a_message_each(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    base = f"/ui/channels/{CHANNEL}"
    cases = {
        "state=everything": "one of waiting, delayed, active, completed, failed",
        "limit=7": "one of 10, 25, 50, 100, 200",
        "since=yesterday": "not a date and time",
        "since=2026-12-02T10:00&until=2026-12-01T10:00": "must not be before",
        "state=waiting&error=Timeout": "filters failed, completed or delayed jobs only",
        "job=a%0Ab": "control characters",
        "cursor=*": "not a cursor of this list",
        "state=waiting&cursor=*%20*": "not a cursor of this list",
        "tz=99999&since=2026-12-01T10:00": "a UTC offset in minutes",
        "error=" + "x" * 201: "at most 200 printable characters",
    }
    async with logged_in(app.server.http_url) as http:
        for query, message in cases.items():
            page = await http.get(f"{base}?{query}")
            assert page.status_code == 422, query
            assert html.escape(message) in page.text, (query, page.text[-2000:])
        missing = await http.get(f"{base}?job=*")  # an exact lookup, never a pattern
        assert missing.status_code == 404
        assert "No job with the id" in missing.text
        assert (await http.get("/ui/channels/nope")).status_code == 404
        assert (await http.get(f"{base}/jobs/nope")).status_code == 404


async def test_bulk_retry_and_discard_count_what_they_did(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    await app.break_handlers(True)
    jobs = [await app.enqueue({"id": str(n)}) for n in range(6)]
    for job in jobs:
        await app.wait_state(job, "failed")
    async with logged_in(app.server.http_url) as http:
        token = csrf_of((await http.get(f"/ui/channels/{CHANNEL}")).text)
        await app.break_handlers(False)
        retried = await http.post(
            f"/ui/channels/{CHANNEL}/actions/retry-failed",
            data={"csrf_token": token},
            follow_redirects=True,
        )
        assert "6 failed job(s) sent back to run." in retried.text
        for job in jobs:
            await app.wait_state(job, "completed")
        await app.break_handlers(True)
        failed = await app.enqueue({"id": "again"})
        await app.wait_state(failed, "failed")
        discarded = await http.post(
            f"/ui/channels/{CHANNEL}/actions/discard-failed",
            data={"csrf_token": token},
            follow_redirects=True,
        )
        assert "1 failed job(s) removed." in discarded.text
        assert await app.client.job(CHANNEL, failed) is None


async def test_an_action_shows_on_the_next_page_not_a_cached_one(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    async with logged_in(app.server.http_url) as http:
        page = await http.get(f"/ui/channels/{CHANNEL}")
        assert 'class="tag">paused' not in page.text  # and the stats are now cached
        paused = await http.post(
            f"/ui/channels/{CHANNEL}/actions/pause",
            data={"csrf_token": csrf_of(page.text)},
            follow_redirects=True,
        )
        assert 'class="tag">paused' in paused.text
        again = await http.get(f"/ui/channels/{CHANNEL}")
        assert 'class="tag">paused' in again.text
        await http.post(
            f"/ui/channels/{CHANNEL}/actions/resume",
            data={"csrf_token": csrf_of(again.text)},
        )
        assert 'class="tag">paused' not in (await http.get(f"/ui/channels/{CHANNEL}")).text
        # paused elsewhere (another process, the CLI): the live counts bring the tag and
        # the Resume button with them, swapped in out of band
        await app.client.pause(CHANNEL)
        await asyncio.sleep(1.1)  # past the stats cache's one second
        live = (await http.get(f"/ui/fragments/channels/{CHANNEL}/counts?state=failed")).text
        assert 'id="channel-paused" hx-swap-oob="true"> <span class="tag">paused' in live
        assert ">Resume</button>" in live
        assert ">Pause</button>" not in live
        assert 'aria-current="true" data-state="failed"' in live
        await app.client.resume(CHANNEL)


async def test_live_names_the_channel_whose_jobs_changed(
    serve_dashboard: ServeDashboard,
) -> None:
    app = await serve_dashboard({})
    async with logged_in(app.server.http_url) as http:
        lines: list[str] = []
        async with asyncio.timeout(20), http.stream("GET", f"/ui/live?channel={CHANNEL}") as live:
            assert live.status_code == 200
            assert live.headers["content-type"].startswith("text/event-stream")
            async for line in live.aiter_lines():
                lines.append(line)
                if line.startswith(": changes of"):
                    await app.enqueue({"id": "live"})
                if line == f"data: {CHANNEL}":
                    break
        assert "event: change" in lines
        missing = await http.get("/ui/live?channel=nope")
        assert missing.status_code == 404
    async with httpx.AsyncClient(base_url=app.server.http_url) as anonymous:
        assert (await anonymous.get("/ui/live")).status_code in (302, 303, 401)


async def test_processes_over_http_and_the_cli(
    serve_dashboard: ServeDashboard, redis_url: str, key_prefix: str
) -> None:
    first = await serve_dashboard({})
    second = await serve_dashboard({"ENABLE_UI": "false", "WORKER_CHANNELS": "idle"})
    async with httpx.AsyncClient(base_url=first.server.http_url) as http:
        auth = {"authorization": f"Bearer {API_KEY}"}
        for _ in range(100):
            listed = (await http.get("/processes", headers=auth)).json()["processes"]
            if len(listed) == 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(p["pid"] for p in listed) == sorted([first.server.pid, second.server.pid])
        by_pid = {p["pid"]: p for p in listed}
        assert by_pid[second.server.pid]["worker_channels"] == ["idle"]
        assert by_pid[first.server.pid]["http"].endswith(str(first.server.http_port))
        assert (await http.get("/processes")).status_code == 401
        page = await http.get("/ui/processes", headers=auth)
        assert str(second.server.pid) in page.text
    async with httpx.AsyncClient(base_url=second.server.http_url) as off:
        assert (await off.get("/ui/", headers=auth)).status_code == 404
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runtime",
        "workers",
        "--json",
        env=clean_env() | {"REDIS_URL": redis_url, "CHANNELKIT_KEY_PREFIX": key_prefix},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    pids = sorted(p["pid"] for p in json.loads(out)["processes"])
    assert pids == sorted([first.server.pid, second.server.pid])
    await second.server.stop()
    async with httpx.AsyncClient(base_url=first.server.http_url) as http:
        listed = (await http.get("/processes", headers=auth)).json()["processes"]
        assert [p["pid"] for p in listed] == [first.server.pid]  # a clean stop leaves


async def test_pages_say_redis_is_unavailable_with_503() -> None:
    """The dashboard of an app whose Redis port has nobody listening (in-process uvicorn
    on a real socket): pages and polled fragments answer 503 with the reason."""
    from generated import registry, routes

    dead = free_port()
    client = Client(Redis.from_url(f"redis://127.0.0.1:{dead}/0", socket_connect_timeout=1))
    ui_routes, ui_state = build_dashboard(client, registry.CHANNELS, ())

    async def ready() -> None:
        return None

    app = build_http_app(
        routes.CONTROLLERS,
        client,
        ready,
        metrics=Metrics(),
        channels=["sms"],
        extra_routes=ui_routes,
        extra_state=ui_state,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            page = await http.get("/ui/")
            assert page.status_code == 503
            assert "Redis is unavailable" in page.text
            assert "<html" in page.text
            fragment = await http.get("/ui/fragments/overview", headers={"hx-request": "true"})
            assert fragment.status_code == 503
            assert "<html" not in fragment.text
            job = await http.get("/ui/channels/sms/jobs/abc")
            assert job.status_code == 503
    finally:
        server.should_exit = True
        await task
        await client.close()
