"""/metrics as Prometheus itself reads it: `promtool check metrics` and a real server.

One `runtime serve` of the reference app (cwd: the repository, app `generated`) per module,
on free loopback ports, with the session's Redis and a key prefix of its own. The handlers
run dry (no provider URLs), so jobs complete at once. The promtool test enqueues on `push`
and the Prometheus test on `sms`, so each can count its own jobs whatever the order.

Needs the `promtool` and `prometheus` binaries (Debian: `apt-get install prometheus`;
`.ci/run` installs them). Skipped when they are missing, unless
CHANNELKIT_REQUIRE_PROMETHEUS=1 (set by `.ci/run`): then every test here fails, saying
which binary is missing, so CI cannot pass without them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from tests.conftest import ROOT, delete_keys, new_prefix
from tests.runtime.conftest import (
    clean_env,
    die_with_parent,
    free_port,
    start_serve_blocking,
    wait_ready_blocking,
)

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

MISSING = [name for name, path in (("promtool", PROMTOOL), ("prometheus", PROMETHEUS)) if not path]
REQUIRED = os.environ.get("CHANNELKIT_REQUIRE_PROMETHEUS", "") not in ("", "0")


@pytest.fixture(scope="module", autouse=True)
def _binaries() -> None:
    """Skip without promtool/prometheus; fail instead where they are required (CI).
    Module-scoped and autouse: it runs before the module's servers start."""
    if MISSING:
        why = f"{' and '.join(MISSING)} not installed (Debian: apt-get install prometheus)"
        if REQUIRED:
            pytest.fail(f"CHANNELKIT_REQUIRE_PROMETHEUS is set and {why}", pytrace=False)
        pytest.skip(why)


SMS_PAYLOAD = {"to": "+14155550100", "body": "hi"}
PUSH_PAYLOAD = {"device_tokens": ["device-1"], "title": "hello", "body": "hi"}
WAIT = 30.0  # seconds, for anything that polls
SCRAPE_JOB = "channelkit"

T = TypeVar("T")


@dataclass(frozen=True)
class Serve:
    process: subprocess.Popen[bytes]
    log: Path
    http_port: int
    """The HTTP API's port, or the METRICS_PORT of a process without it."""
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def _serve(redis_url: str, folder: Path, settings: dict[str, str]) -> Iterator[Serve]:
    """`runtime serve` of the reference app with `settings`, stopped and its keys deleted
    at the end. `settings` must set HTTP_PORT or METRICS_PORT (where it is ready)."""
    key_prefix = new_prefix("prom-")
    environ = clean_env() | {
        "CHANNELKIT_APP": "generated",
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "WARNING",
        # dry runs: the handlers log instead of delivering
        "SMS_PROVIDER_URL": "",
        "PUSH_PROVIDER_URL": "",
    }
    environ |= settings
    log = folder / "serve.log"
    process = start_serve_blocking(ROOT, environ, log)
    port = int(settings.get("METRICS_PORT") or settings["HTTP_PORT"])
    server = Serve(process, log, port, int(settings.get("GRPC_PORT", "0")))
    try:
        wait_ready_blocking(server.process, server.url, server.output)
        yield server
    finally:
        _stop(process)
        delete_keys(redis_url, f"{key_prefix}:*")


@pytest.fixture(scope="module")
def serve(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """HTTP, gRPC and workers in one process."""
    ports = {"HTTP_PORT": str(free_port()), "GRPC_PORT": str(free_port())}
    with _serve(redis_url, tmp_path_factory.mktemp("prometheus-serve"), ports) as server:
        yield server


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _poll(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Call `probe` until it returns something other than None; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.2)


def _enqueue(http: httpx.Client, server: Serve, channel: str, payload: Any, count: int) -> None:
    """Enqueue `count` jobs over HTTP and wait until every one of them has completed."""
    ids = []
    for _ in range(count):
        response = http.post(f"{server.url}/channels/{channel}/jobs", json=payload)
        assert response.status_code == 202, response.text
        ids.append(str(response.json()["id"]))

    def all_completed() -> bool | None:
        states = [
            http.get(f"{server.url}/channels/{channel}/jobs/{job_id}").json()["state"]
            for job_id in ids
        ]
        return True if all(state == "completed" for state in states) else None

    _poll(f"{count} {channel} jobs completed", all_completed)


def test_promtool_accepts_the_exposition(serve: Serve) -> None:
    with httpx.Client(timeout=5.0) as http:
        _enqueue(http, serve, "push", PUSH_PAYLOAD, 3)
        # one unary gRPC call, so that the gRPC histogram has a sample too
        with grpc.insecure_channel(f"127.0.0.1:{serve.grpc_port}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            check(health_pb2.HealthCheckRequest(service=""), timeout=5.0)
        response = http.get(f"{serve.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    # what the test meant to cover is there, so that promtool checks more than an empty page
    for sample in (
        'channelkit_jobs_completed_total{channel="push"} 3.0',
        'channelkit_job_run_seconds_count{channel="push"} 3.0',
        'channelkit_queue_jobs{channel="push",state="completed"} 3.0',
        "channelkit_http_request_seconds_bucket{",
        "channelkit_grpc_request_seconds_bucket{",
    ):
        assert sample in text, f"{sample!r} missing from /metrics:\n{text}"

    _promtool_check(response.content)


def test_promtool_accepts_a_worker_only_exposition(redis_url: str, tmp_path: Path) -> None:
    """A process without the HTTP API serves /metrics on METRICS_PORT: the same checks."""
    settings = {
        "ENABLE_API": "false",
        "ENABLE_GRPC": "false",
        "METRICS_PORT": str(free_port()),
    }
    with _serve(redis_url, tmp_path, settings) as worker, httpx.Client(timeout=5.0) as http:
        response = http.get(f"{worker.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    for sample in (
        'channelkit_jobs_completed_total{channel="sms"} 0.0',
        'channelkit_queue_jobs{channel="sms",state="waiting"} 0.0',
    ):
        assert sample in text, f"{sample!r} missing from /metrics:\n{text}"
    _promtool_check(response.content)


def _promtool_check(exposition: bytes) -> None:
    """`promtool check metrics` (the exposition on stdin): no problems, lint included."""
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=30,
        check=False,
    )
    problems = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, f"promtool check metrics exited {result.returncode}:\n{problems}"
    assert problems == "", f"promtool check metrics reported:\n{problems}"


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, http: httpx.Client, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query (fails the test on an API error)."""
        response = http.get(f"{self.url}/api/v1/query", params={"query": promql})
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, http: httpx.Client, promql: str) -> float | None:
        """The value of a one-sample query, or None while it has no sample."""
        result = self.query(http, promql)
        if not result:
            return None
        assert len(result) == 1, f"{promql}: {result}"
        return float(result[0]["value"][1])


@pytest.fixture
def prometheus(serve: Serve, tmp_path: Path) -> Iterator[PrometheusServer]:
    assert PROMETHEUS is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: {SCRAPE_JOB}\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{serve.http_port}']\n"
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
    try:
        with httpx.Client(timeout=2.0) as http:

            def ready() -> bool | None:
                code = process.poll()
                if code is not None:
                    pytest.fail(f"prometheus exited with {code}:\n{log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    return True if http.get(f"{server.url}/-/ready").status_code == 200 else None
                return None

            _poll("prometheus ready", ready)
        yield server
    finally:
        _stop(process)


def test_prometheus_scrapes_and_queries(serve: Serve, prometheus: PrometheusServer) -> None:
    jobs = 12
    sms = 'channel="sms"'
    with httpx.Client(timeout=5.0) as http:
        # Scraped once before the jobs (the sms series exist from the start, at 0), so that
        # rate() over the window sees the whole increase.
        up = _poll(
            "prometheus scraped the runtime",
            lambda: prometheus.value(http, f'up{{job="{SCRAPE_JOB}"}} == 1'),
        )
        assert up == 1.0
        before = _poll(
            "the sms counter scraped",
            lambda: prometheus.value(http, f"sum(channelkit_jobs_completed_total{{{sms}}})"),
        )
        assert before == 0.0

        _enqueue(http, serve, "sms", SMS_PAYLOAD, jobs)

        completed = _poll(
            f"sum(channelkit_jobs_completed_total) reaching {jobs}",
            lambda: (
                value
                if (
                    value := prometheus.value(
                        http, f"sum(channelkit_jobs_completed_total{{{sms}}})"
                    )
                )
                == jobs
                else None
            ),
        )
        assert completed == jobs

        # queue depth, read from Redis at scrape time: every job of this prefix completed
        depth = prometheus.value(http, f'max(channelkit_queue_jobs{{{sms},state="completed"}})')
        assert depth == jobs
        states = {
            series["metric"]["state"]
            for series in prometheus.query(http, f"channelkit_queue_jobs{{{sms}}}")
        }
        assert states == {"waiting", "active", "delayed", "completed", "failed", "cancelled"}

        # histograms: the p90 of run and wait times over the window, as in docs/operations.md
        for histogram in ("channelkit_job_run_seconds", "channelkit_job_wait_seconds"):
            counted = f"sum({histogram}_count{{{sms}}}) == {jobs}"
            _poll(counted, functools.partial(prometheus.value, http, counted))
            p90 = prometheus.value(
                http,
                f"histogram_quantile(0.9, sum by (le) (rate({histogram}_bucket{{{sms}}}[1m])))",
            )
            assert p90 is not None, histogram
            assert math.isfinite(p90), f"{histogram}: p90 = {p90}"
            assert 0 <= p90 <= 300, f"{histogram}: p90 = {p90}"

        # Prometheus itself found nothing wrong with the scrapes
        target = http.get(f"{prometheus.url}/api/v1/targets").json()["data"]["activeTargets"]
        assert [(t["health"], t["lastError"]) for t in target] == [("up", "")]
