"""Shared pieces of the benchmarks: temp bench projects, `runtime serve` processes,
/proc readers, statistics and the result rows every bench returns.

Every bench builds its own project in a temp dir (channels.yaml, handlers, `python -m
runtime generate --out <package>`), starts `python -m runtime serve` with cwd = that
project on free ports, and stops it by pid. Redis: BENCH_REDIS_URL, default
redis://127.0.0.1:6379/0; every run uses its own key prefix and deletes its keys after.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix(tag: str) -> str:
    return f"bench-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(redis_url())


def delete_prefix(prefix: str) -> int:
    """Delete every key of one bench run (its own prefix only; never a flush)."""
    client = sync_redis()
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    client.close()
    return deleted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds` (from /proc/stat): how quiet the machine is."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    total = max(1, total1 - total0)
    return 1.0 - (idle1 - idle0) / total


def wait_quiet(threshold: float = 0.25, timeout: float = 10.0) -> float:
    """Wait (up to `timeout`) until the machine is mostly idle; returns the busy share seen."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy(0.5)
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(0.5)
    return busy


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    """Median of the rounds with min and max."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        return cls(statistics.median(samples), min(samples), max(samples), tuple(samples))

    def text(self, digits: int = 0) -> str:
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


@dataclass
class Row:
    """One figure of the results table, with its baseline from the same run."""

    bench: str
    case: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio_text(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def met_text(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every bench script takes; a script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--json", help="write the rows here")
    return parser


def report(rows: Sequence[Row], json_path: str | None) -> None:
    """Print the rows and, when asked, write them as JSON for run_all.py."""
    print_rows(rows)
    write_json(json_path, rows)


def print_rows(rows: Sequence[Row]) -> None:
    headers = ["bench", "case", "value", "baseline", "ratio", "goal", "met"]
    table = [
        [r.bench, r.case, r.value, r.baseline, ratio_text(r.ratio), r.goal, met_text(r.met)]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for r in rows:
        if r.note:
            print(f"  note ({r.bench}: {r.case}): {r.note}")


def write_json(path: str | None, rows: Sequence[Row]) -> None:
    if path:
        Path(path).write_text(json.dumps([r.as_dict() for r in rows], indent=1))


# -- bench projects -------------------------------------------------------------------

# A realistic notification payload: what an app sends to "text this user".
PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to", "body"],
    "properties": {
        "to": {"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$"},
        "body": {"type": "string", "minLength": 1, "maxLength": 1600},
        "sender_id": {"type": "string", "pattern": "^[A-Za-z0-9 ]{1,11}$"},
        "priority": {"type": "string", "enum": ["normal", "high"], "default": "normal"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "sent_at": {"type": "number", "description": "enqueue time (latency bench)"},
    },
}

SAMPLE_PAYLOAD: dict[str, Any] = {
    "to": "+14155550100",
    "body": "Your verification code is 123456. It expires in 10 minutes.",
    "sender_id": "Acme",
    "priority": "high",
    "metadata": {"user_id": "u-18234", "campaign": "signup-otp", "locale": "en-US"},
}

# A realistic order-receipt payload (the same-work drain against BullMQ, and the payload
# format bench): nested objects, an array of lines, and the four string formats the
# generated models check (email, uuid, date-time, uri).
RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["to", "order", "receipt_url"],
    "properties": {
        "to": {
            "type": "object",
            "additionalProperties": False,
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "format": "email", "maxLength": 254},
                "name": {"type": "string", "minLength": 1, "maxLength": 256},
            },
        },
        "order": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "placed_at", "lines", "total"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "placed_at": {"type": "string", "format": "date-time"},
                "lines": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["sku", "quantity", "unit_price"],
                        "properties": {
                            "sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,32}$"},
                            "quantity": {"type": "integer", "minimum": 1},
                            "unit_price": {"type": "integer", "minimum": 0},
                        },
                    },
                },
                "total": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["amount", "currency"],
                    "properties": {
                        "amount": {"type": "integer", "minimum": 0},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                },
            },
        },
        "receipt_url": {"type": "string", "format": "uri"},
        "locale": {"type": "string", "enum": ["en-GB", "en-US", "fr-FR", "de-DE"]},
    },
}

RECEIPT_PAYLOAD: dict[str, Any] = {
    "to": {"email": "ada.lovelace@example.com", "name": "Ada Lovelace"},
    "order": {
        "id": "6f1c2a9e-3b7d-4c51-9a0e-2d8b4f6a1c37",
        "placed_at": "2026-11-30T17:42:05Z",
        "lines": [
            {"sku": "BOOK-0042", "quantity": 1, "unit_price": 2999},
            {"sku": "MUG-7", "quantity": 2, "unit_price": 1000},
        ],
        "total": {"amount": 4999, "currency": "EUR"},
    },
    "receipt_url": "https://shop.example.com/orders/6f1c2a9e/receipt",
    "locale": "en-GB",
}


def without_formats(schema: Any) -> Any:
    """The same schema with every `format` left out (the anchor of the format bench)."""
    if isinstance(schema, dict):
        return {k: without_formats(v) for k, v in schema.items() if k != "format"}
    if isinstance(schema, list):
        return [without_formats(item) for item in schema]
    return schema


HANDLERS = '''"""Bench handlers: no-op, one that records enqueue-to-start latency, and one that does
one Redis INCR on the client the app's resources made once (the same work as BullMQ's
worker in bench/bullmq/bench.mjs)."""

import atexit
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from runtime.engine.context import JobContext

_latencies: list[float] = []


async def noop(payload: object) -> None:
    return None


async def record_latency(payload: object) -> None:
    _latencies.append(time.time() - getattr(payload, "sent_at", 0.0))


def _dump() -> None:
    out = os.environ.get("BENCH_LATENCY_OUT")
    if out and _latencies:
        with open(out, "w") as file:
            file.write("\\n".join(repr(value) for value in _latencies))


atexit.register(_dump)


@asynccontextmanager
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        yield client
    finally:
        await client.aclose()


async def count(payload: object, context: JobContext[Redis]) -> None:
    await context.resources.incr(os.environ["BENCH_COUNTER_KEY"])
'''


@dataclass
class Project:
    path: Path
    package: str  # the generated package (CHANNELKIT_APP)

    def model(self, channel: str) -> type[Any]:
        """The channel's generated payload model, imported from this project."""
        if str(self.path) not in sys.path:
            sys.path.insert(0, str(self.path))
        module = importlib.import_module(f"{self.package}.models.{channel}")
        name = "".join(part.capitalize() for part in channel.split("_")) + "Payload"
        model: type[Any] = getattr(module, name)
        return model


def make_project(
    base: Path,
    package: str,
    channels: Mapping[str, Mapping[str, Any]],
    resources: str | None = None,
) -> Project:
    """Write channels.yaml (JSON is YAML) and the handlers, then `runtime generate`."""
    path = base / package
    (path / "benchapp").mkdir(parents=True)
    (path / "benchapp" / "__init__.py").write_text("")
    (path / "benchapp" / "handlers.py").write_text(HANDLERS)
    config: dict[str, Any] = {
        "version": 1,
        **({"resources": resources} if resources else {}),
        "channels": {
            name: {"payload": PAYLOAD_SCHEMA, "retry": {"attempts": 3}} | dict(spec)
            for name, spec in channels.items()
        },
    }
    (path / "channels.yaml").write_text(json.dumps(config, indent=2) + "\n")
    done = subprocess.run(
        [PY, "-m", "runtime", "generate", "--out", package],
        cwd=path,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"runtime generate failed in {path}:\n{done.stdout}{done.stderr}")
    return Project(path, package)


# -- processes ------------------------------------------------------------------------


@dataclass
class Proc:
    """A subprocess this bench started, stopped by its pid."""

    popen: subprocess.Popen[bytes]
    started: float  # perf_counter at spawn
    log: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
        return int(self.popen.returncode)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-3000:]


def spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path | None = None
) -> Proc:
    out: Any = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    started = time.perf_counter()
    popen = subprocess.Popen(
        list(argv), cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
    )
    if log is not None:
        out.close()
    return Proc(popen, started, log)


def serve(
    project_dir: Path,
    package: str,
    prefix: str,
    *,
    api: bool = True,
    grpc: bool = True,
    workers: bool = True,
    worker_channels: str = "",
    log: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Proc:
    """`python -m runtime serve [args]` in the project, on free ports."""
    http_port, grpc_port = free_port(), free_port()
    env = {
        "REDIS_URL": redis_url(),
        "CHANNELKIT_APP": package,
        "CHANNELKIT_KEY_PREFIX": prefix,
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(grpc_port),
        "ENABLE_API": str(api).lower(),
        "ENABLE_GRPC": str(grpc).lower(),
        "ENABLE_WORKERS": str(workers).lower(),
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_TIMEOUT": "10",
        **({"WORKER_CHANNELS": worker_channels} if worker_channels else {}),
        **(extra_env or {}),
    }
    proc = spawn([PY, "-m", "runtime", "serve", *args], cwd=project_dir, env=env, log=log)
    proc.ports = {"http": http_port, "grpc": grpc_port}
    return proc


def http_ready(port: int, timeout: float = 60.0, proc: Proc | None = None) -> float:
    """Poll /health/ready until 200; returns the perf_counter time it answered."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/health/ready"
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"server exited early:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.005)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def wait_group(
    client: redis.Redis, stream: str, group: str, proc: Proc, timeout: float = 60.0
) -> None:
    """Wait until the stream's consumer group exists (a worker creates it as it starts,
    just before its read loop), then a little more for the first read to be issued.
    Redis 7.0 lists a consumer only once it has read something, so that cannot be used."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"process exited early:\n{proc.tail()}")
        with contextlib.suppress(redis.ResponseError):
            groups: Any = client.xinfo_groups(stream)
            if any(g["name"] in (group, group.encode()) for g in groups):
                time.sleep(0.3)
                return
        time.sleep(0.02)
    raise TimeoutError(f"no group {group} on {stream} after {timeout} s")


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "taskiq",
        "taskiq-redis",
        "redis",
        "hiredis",
        "pydantic",
        "pydantic-core",
        "litestar",
        "uvicorn",
        "uvloop",
        "grpcio",
        "protobuf",
        "httpx",
    ]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    client = sync_redis()
    info: Any = client.info("server")
    client.close()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": sys.version.split()[0],
        "redis server": str(info.get("redis_version", "?")),
        "kernel": os.uname().release,
    }
