"""Every shell and Python snippet of README.md and docs/*.md runs as pasted.

Each fenced block in `console`, `shell`, `bash`, `sh` or `python` is one test, named
`<file>:<line of the fence>`, and does one of three things, chosen by an HTML comment on
the line right before its fence:

- nothing: it RUNS against the reference app, served once for this module by
  `python -m runtime serve` from the repository root on free ports, the session's Redis
  and a key prefix under `new_prefix()` (deleted at the end).
  - console: each `$ ` command (with its `\\` continuation lines) runs through
    `bash -c 'set -e -o pipefail; <command>'` and must exit 0; the lines after it, up to
    the next `$ `, are its shown output, of which the stable parts are compared: the
    status code of an `HTTP/1.1 …` line, the header names shown under it, every JSON key
    (`"name":`) shown, and otherwise the first word of the first line.
  - shell, bash, sh: the whole block runs as one `bash -e -o pipefail` script and must
    exit 0 (their shown output is in `#` comments and is not compared).
  - python: the block runs as `python -c <block>` with the venv's python, cwd the
    repository root (so `generated` imports as in the project), and must exit 0. A block
    defining a `test_…` function is written to a file and run by pytest with the
    project's pytest settings, and must pass.
- `<!-- compile only: <reason> -->` (python only): code meant to be pasted into a file of
  a project that does not exist here (a new channel's handler, a fragment): it must
  compile (`compile(..., "exec")`, top-level `await` allowed). No mypy: its imports name
  modules this repository does not have.
- `<!-- not run: <reason> -->`: skipped, and the reason must say why.
- `<!-- served with: NAME=value ... -->`: runs like the first kind, against a second
  server started with those settings (the API-key examples).

What is changed in a snippet's text before it runs, and nothing else: `localhost:8000` /
`127.0.0.1:8000` become the served HTTP address, `localhost:50051` / `127.0.0.1:50051` the
served gRPC address; in Python, the Redis URL of `make run`'s embedded Redis
(`f"unix://{Path('.channelkit/redis.sock').resolve()}"`) becomes the session's Redis URL
and `Client.from_url(REDIS_URL)` gets this module's key prefix, so a snippet's jobs land
in keys the suite cleans up. Shell snippets run with `.venv/bin` first on PATH (an
activated venv), `REDIS_URL` and `CHANNELKIT_KEY_PREFIX` of the served app, in a scratch
folder linking the project's files (so `-o openapi.json` writes there, not in the repo).

Jobs the docs refer to by an id that the docs got at random (`7fb596e0…`, a failed
`push-fail-1`, the CLI's failed `bad-1` and `bad-2`) and `order-1042-sms` are enqueued
with those ids when the app is served, so each block can run on its own: the push provider
is `http://127.0.0.1:9/`, where nothing listens, so push-fail-1 fails its 3 attempts as in
docs/http-api.md; bad-1 and bad-2 carry a payload the sms model rejects.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from runtime import Client
from tests.conftest import ROOT, delete_keys, new_prefix
from tests.runtime.conftest import (
    clean_env,
    free_port,
    start_serve_blocking,
    wait_ready_blocking,
)

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = frozenset({"console", "shell", "bash", "sh", "python"})
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[^`\s]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not run|compile only|served with):(?P<text>.*?)-->\s*$")
JSON_KEY = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)":')
HEADER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): ")
STATUS = re.compile(r"^HTTP/[0-9.]+ (\d{3})")
COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
VENV_BIN = Path(sys.executable).parent
# The scratch folder the shell snippets run in links these from the repository.
PROJECT_FILES = (
    "generated",
    "notifications",
    "schema",
    "channels.yaml",
    "channels.lock.yaml",
    "node_modules",
    "package.json",
    ".spectral.yaml",
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str
    kind: str  # "run", "not run", "compile only" or "served with"
    note: str  # the marker's reason, or the settings of "served with"

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract(path: Path) -> Iterator[Block]:
    """The fenced blocks of `path` in LANGUAGES, with the marker right before each."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^\s*{fence}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        assert end < len(lines), f"{path.name}:{index + 1}: fence never closed"
        if opening["lang"] in LANGUAGES:
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[index + 1 : end]
            ]
            marker = MARKER.match(lines[index - 1]) if index else None
            yield Block(
                path=path,
                line=index + 1,
                lang=opening["lang"],
                text="\n".join(body) + "\n",
                kind=marker["kind"] if marker else "run",
                note=marker["text"].strip() if marker else "",
            )
        index = end + 1


BLOCKS = [block for document in DOCUMENTS for block in extract(document)]


def _param(block: Block) -> object:
    if block.kind == "not run":
        return pytest.param(block, id=block.name, marks=pytest.mark.skip(reason=block.note))
    return pytest.param(block, id=block.name)


@dataclass
class Served:
    """One `runtime serve` of the reference app."""

    process: subprocess.Popen[bytes]
    log: Path
    http_port: int
    grpc_port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Docs:
    """What the snippets run against: the served apps, their Redis and key prefix."""

    redis_url: str
    prefix: str
    scratch: Path
    serve: Callable[[str], Served]

    def rewrite(self, text: str, served: Served) -> str:
        for host in ("localhost", "127.0.0.1"):
            text = text.replace(f"{host}:8000", f"127.0.0.1:{served.http_port}")
            text = text.replace(f"{host}:50051", f"127.0.0.1:{served.grpc_port}")
        text = text.replace(
            "f\"unix://{Path('.channelkit/redis.sock').resolve()}\"", repr(self.redis_url)
        )
        return text.replace(
            "Client.from_url(REDIS_URL)", f"Client.from_url(REDIS_URL, prefix={self.prefix!r})"
        )

    def shell_env(self) -> dict[str, str]:
        env = clean_env()
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        return env | {"REDIS_URL": self.redis_url, "CHANNELKIT_KEY_PREFIX": self.prefix}


class _Invalid(BaseModel):
    """A payload the channel's model rejects, so its job fails as `payload_invalid`."""

    to: str
    body: str


async def _seed(redis_url: str, prefix: str) -> None:
    from generated.models.push import PushPayload
    from generated.models.sms import SmsPayload

    async with Client.from_url(redis_url, prefix=prefix) as client:
        await client.enqueue(
            "sms", SmsPayload(to="+14155550100", body="Order 1042 shipped"), job_id="order-1042-sms"
        )
        await client.enqueue(
            "sms",
            SmsPayload(to="+14155550100", body="reminder"),
            job_id="7fb596e0b13449b8a381ae6454dcad95",
            delay_ms=600_000,
        )
        for job_id in ("bad-1", "bad-2"):
            await client.enqueue("sms", _Invalid(to="not a number", body=""), job_id=job_id)
        await client.enqueue(
            "push",
            PushPayload(device_tokens=["tok-1"], title="Hi", body="there"),
            job_id="push-fail-1",
        )


def _wait_failed(url: str, channel: str, job_ids: set[str]) -> None:
    """Until the seeded jobs are failed (each fails at once: its payload is invalid)."""
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=url, timeout=5) as http:
        while True:
            listed = http.get(f"/channels/{channel}/jobs", params={"state": "failed"}).json()
            if job_ids <= {job["id"] for job in listed["jobs"]}:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"seeded jobs {sorted(job_ids)} of {channel} not failed: {listed}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def docs(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    prefix = new_prefix("docs-")
    folder = tmp_path_factory.mktemp("docs-snippets")
    scratch = folder / "project"
    scratch.mkdir()
    for name in PROJECT_FILES:
        (scratch / name).symlink_to(ROOT / name)
    servers: dict[str, Served] = {}

    def serve(settings: str) -> Served:
        if settings in servers:
            return servers[settings]
        http_port, grpc_port = free_port(), free_port()
        environ = clean_env() | {
            "REDIS_URL": redis_url,
            "CHANNELKIT_KEY_PREFIX": prefix,
            "CHANNELKIT_DATA_DIR": str(folder / "data"),
            "HTTP_PORT": str(http_port),
            "GRPC_PORT": str(grpc_port),
            "SHUTDOWN_TIMEOUT": "5",
            # Nothing listens on port 9 (discard): push jobs fail, as push-fail-1 does.
            "PUSH_PROVIDER_URL": "http://127.0.0.1:9/",
        }
        environ |= dict(item.split("=", 1) for item in settings.split())
        log = folder / f"serve-{len(servers)}.log"
        process = start_serve_blocking(ROOT, environ, log)
        served = servers[settings] = Served(process, log, http_port, grpc_port)
        wait_ready_blocking(
            process, f"http://127.0.0.1:{http_port}", lambda: log.read_text(errors="replace")
        )
        if not settings:
            asyncio.run(_seed(redis_url, prefix))
            _wait_failed(f"http://127.0.0.1:{http_port}", "sms", {"bad-1", "bad-2"})
            _wait_failed(f"http://127.0.0.1:{http_port}", "push", {"push-fail-1"})
        return served

    try:
        serve("")
        yield Docs(redis_url, prefix, scratch, serve)
    finally:
        for served in servers.values():
            served.stop()
        delete_keys(redis_url, f"{prefix}*")


def test_blocks_found() -> None:
    """The extraction sees the fences (a broken regex would make every test vanish)."""
    names = {block.name for block in BLOCKS}
    assert len(names) == len(BLOCKS) > 40, names
    assert {block.lang for block in BLOCKS} >= {"console", "sh", "python"}


def test_markers_say_why() -> None:
    """Every marker has a reason; compile-only is for Python; served-with gives settings."""
    for block in BLOCKS:
        if block.kind != "run":
            assert block.note, f"{block.name}: '<!-- {block.kind}: -->' without a reason"
        if block.kind == "compile only":
            assert block.lang == "python", f"{block.name}: compile only is for python blocks"
        if block.kind == "served with":
            assert all(re.fullmatch(r"[A-Z_]+=\S+", item) for item in block.note.split()), (
                f"{block.name}: 'served with' takes NAME=value settings, got {block.note!r}"
            )


@pytest.mark.parametrize("block", [_param(block) for block in BLOCKS])
def test_snippet(block: Block, docs: Docs, tmp_path: Path) -> None:
    if block.kind == "compile only":
        compile(block.text, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return
    served = docs.serve(block.note if block.kind == "served with" else "")
    text = docs.rewrite(block.text, served)
    if block.lang == "python":
        _run_python(block, text, docs, tmp_path)
    elif block.lang == "console":
        for command, shown in _commands(text):
            output = _bash(block, f"set -e -o pipefail\n{command}", docs)
            _compare(block, command, shown, output)
    else:
        _bash(block, f"set -e -o pipefail\n{text}", docs)


def _run_python(block: Block, text: str, docs: Docs, tmp_path: Path) -> None:
    env = clean_env()
    if re.search(r"^(async )?def test_", text, re.MULTILINE):
        module = tmp_path / "test_snippet.py"
        module.write_text(text)
        args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
        args += ["--rootdir", str(ROOT), str(module)]
    else:
        args = ["-c", text]
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block.name} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    if args[0] == "-m":
        assert re.search(r"\b1 passed\b", result.stdout), f"{block.name}:\n{result.stdout}"


def _bash(block: Block, script: str, docs: Docs) -> str:
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=docs.scratch,
        env=docs.shell_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block.name}: exit {result.returncode} from\n{script}\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def _commands(text: str) -> Iterator[tuple[str, list[str]]]:
    """(command with its continuation lines, the output lines shown after it)."""
    command: list[str] = []
    shown: list[str] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            if command:
                yield "\n".join(command), shown
            command, shown = [line[2:]], []
        elif command and command[-1].endswith("\\") and not shown:
            command.append(line)
        elif command:
            shown.append(line)
    if command:
        yield "\n".join(command), shown


def _compare(block: Block, command: str, shown: list[str], output: str) -> None:
    """The stable parts of the shown output are in the real one."""
    # A note after the output (`{...}          # not enqueued again`) is not output.
    lines = [re.sub(r"\s{2,}#.*$", "", line).rstrip() for line in shown]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return
    where = f"{block.name}: `{command}`\nshown:\n" + "\n".join(shown) + f"\ngot:\n{output}"
    real = output.replace("\r\n", "\n")
    status = STATUS.match(lines[0])
    if status:
        got = STATUS.match(real)
        assert got is not None, where
        assert got[1] == status[1], where
        head = real.split("\n\n", 1)[0].lower()
        for line in lines[1:]:
            header = HEADER.match(line)
            if header is None:
                break
            assert f"\n{header[1].lower()}: " in head, where
    keys = set(JSON_KEY.findall("\n".join(lines)))
    missing = keys - set(JSON_KEY.findall(real))
    assert not missing, f"keys {sorted(missing)} missing; {where}"
    if not status and not keys:
        word = re.match(r"\s*([A-Za-z_]+)", lines[0])
        assert word is None or re.search(rf"\b{word[1]}\b", real), where
