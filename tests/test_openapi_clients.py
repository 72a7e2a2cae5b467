"""The served OpenAPI document as client authors use it, against a real `runtime serve`.

One reference app per module (cwd: the repository, app `generated`), with API keys, so the
clients go through the bearer scheme the document declares. Checked: every `$ref` resolves;
every response is typed; Spectral's `spectral:oas` ruleset finds no error; openapi-typescript's
types pass `tsc --strict` together with tests/openapi_clients/enqueue_sms.ts, whose compiled
output enqueues a job and reads its status; openapi-python-client generates a client that
does the same. The Node tools come from the repository's package.json (`npm ci`, as .ci/run
does); the tests that need them skip, saying so, where they are not installed.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

from tests.conftest import ROOT, delete_keys, new_prefix
from tests.runtime.conftest import (
    clean_env,
    free_port,
    start_serve_blocking,
    wait_ready_blocking,
)

API_KEY = "client-test-key"
NODE_BIN = ROOT / "node_modules" / ".bin"
TS_CLIENT = Path(__file__).resolve().parent / "openapi_clients" / "enqueue_sms.ts"
TOOL_TIMEOUT = 120


@dataclass(frozen=True)
class Served:
    http_url: str
    document: dict[str, Any]
    document_file: Path


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("openapi-clients")
    http_port = free_port()
    key_prefix = new_prefix("clients-")
    environ = clean_env() | {
        "CHANNELKIT_APP": "generated",
        "REDIS_URL": redis_url,
        "CHANNELKIT_KEY_PREFIX": key_prefix,
        "HTTP_PORT": str(http_port),
        "ENABLE_GRPC": "false",
        "ENABLE_WORKERS": "false",
        "API_KEYS": API_KEY,
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "WARNING",
    }
    log = folder / "serve.log"
    process = start_serve_blocking(ROOT, environ, log)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready_blocking(process, url, lambda: log.read_text(errors="replace"))
        response = httpx.get(f"{url}/schema/openapi.json", timeout=10)
        assert response.status_code == 200, response.text[:500]
        document_file = folder / "openapi.json"
        document_file.write_bytes(response.content)
        yield Served(url, response.json(), document_file)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        delete_keys(redis_url, f"{key_prefix}:*")


def _node_tool(name: str) -> Path:
    tool = NODE_BIN / name
    if shutil.which("node") is None or not tool.exists():
        pytest.skip(f"{name} is not installed: run `npm ci` at the repository root (.ci/run does)")
    return tool


def _run(command: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited with {result.returncode}:\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def _references(node: Any, found: list[str]) -> list[str]:
    """Every `$ref` in `node`, and the targets of discriminator mappings."""
    if isinstance(node, list):
        for item in node:
            _references(item, found)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            elif key == "discriminator" and isinstance(value, dict):
                found.extend(str(target) for target in value.get("mapping", {}).values())
            else:
                _references(value, found)
    return found


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_every_reference_resolves(served: Served) -> None:
    resolver = Registry().with_resource("urn:openapi", Resource.opaque(served.document))
    references = _references(served.document, [])
    dangling = []
    for reference in sorted(set(references)):
        try:
            resolver.resolver("urn:openapi").lookup(reference)
        except Unresolvable:
            dangling.append(reference)
    assert references
    assert not dangling, f"references to nothing: {dangling}"


def test_every_response_is_typed(served: Served) -> None:
    untyped = []
    for method, path, operation in _operations(served.document):
        for status, response in operation["responses"].items():
            if status == "204":
                assert "content" not in response, (method, path)
                continue
            (content,) = response["content"].values()  # JSON, or an SSE stream's data
            schema = content["schema"]
            if (path.startswith("/channels/") or path == "/processes") and "$ref" not in schema:
                untyped.append((method, path, status, schema))
    assert not untyped, f"responses without a named schema: {untyped}"


@pytest.mark.parametrize(
    ("method", "path", "status", "schema"),
    [
        ("GET", "/channels/sms/jobs/{job_id}", "200", "JobStatus"),
        ("GET", "/channels/sms/jobs", "200", "JobList"),
        ("GET", "/channels/sms", "200", "ChannelSummary"),
        ("POST", "/channels/sms/jobs/{job_id}/retry", "202", "RetryAccepted"),
        ("POST", "/channels/sms/jobs", "202", "EnqueuedJob"),
        ("POST", "/channels/sms/jobs", "400", "ErrorBody"),
        ("POST", "/channels/sms/jobs", "401", "ErrorBody"),
        ("POST", "/channels/sms/jobs", "413", "ErrorBody"),
        ("POST", "/channels/sms/jobs/batch", "415", "ValidationErrorBody"),
        ("POST", "/channels/sms/jobs", "422", "ValidationErrorBody"),
        ("POST", "/channels/sms/jobs", "503", "ErrorBody"),
        ("GET", "/channels/sms/jobs", "422", "ValidationErrorBody"),
        ("GET", "/channels/sms/jobs/{job_id}", "404", "ErrorBody"),
        ("DELETE", "/channels/sms/jobs/{job_id}", "409", "ErrorBody"),
        ("GET", "/processes", "200", "ProcessList"),
    ],
)
def test_response_schema(served: Served, method: str, path: str, status: str, schema: str) -> None:
    response = served.document["paths"][path][method.lower()]["responses"][status]
    assert response["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{schema}"
    }


def test_api_keys_are_a_bearer_scheme_on_the_protected_routes(served: Served) -> None:
    schemes = served.document["components"]["securitySchemes"]
    assert schemes == {
        "ApiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the server's API_KEYS: `Authorization: Bearer <key>`.",
        }
    }
    for method, path, operation in _operations(served.document):
        if path.startswith("/channels/") or path == "/processes":
            assert operation.get("security") == [{"ApiKey": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
        else:
            assert "security" not in operation, (method, path)
    assert "security" not in served.document  # /health and /schema stay open


def test_spectral_oas_finds_no_errors(served: Served, tmp_path: Path) -> None:
    spectral = _node_tool("spectral")
    report = tmp_path / "spectral.json"
    subprocess.run(
        [
            str(spectral),
            "lint",
            str(served.document_file),
            "--ruleset",
            str(ROOT / ".spectral.yaml"),
            "--format",
            "json",
            "--output",
            str(report),
            "--quiet",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    findings = json.loads(report.read_text())
    errors = [
        f"{'.'.join(map(str, item['path']))}: {item['code']}: {item['message']}"
        for item in findings
        if item["severity"] == 0
    ]
    assert not errors, "\n".join(errors)


def test_typescript_client_enqueues_and_reads_the_status(served: Served, tmp_path: Path) -> None:
    openapi_typescript = _node_tool("openapi-typescript")
    tsc = _node_tool("tsc")
    # api.ts, not api.d.ts: skipLibCheck (which spares the compile @types/node's own
    # checking) would skip a .d.ts, and the generated types are what is under test.
    _run(
        [
            openapi_typescript,
            served.document_file,
            "--output",
            "api.ts",
            "--default-non-nullable",
            "false",
        ],
        tmp_path,
    )
    shutil.copy(TS_CLIENT, tmp_path / TS_CLIENT.name)
    config = {
        "compilerOptions": {
            "strict": True,
            "target": "es2022",
            "module": "commonjs",
            "lib": ["es2022", "dom"],
            "types": ["node"],
            "typeRoots": [str(ROOT / "node_modules" / "@types")],
            "skipLibCheck": True,
            "noEmitOnError": True,
            "outDir": "out",
        },
        "files": ["api.ts", TS_CLIENT.name],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    _run([tsc, "--project", "tsconfig.json"], tmp_path)

    output = _run(["node", "out/enqueue_sms.js", served.http_url, API_KEY], tmp_path)
    answer = json.loads(output)
    job_id = answer["enqueued"]["id"]
    assert answer["enqueued"] == {"id": job_id, "channel": "sms"}
    assert answer["status"]["id"] == job_id
    assert answer["status"]["state"] == "waiting"
    stored = httpx.get(
        f"{served.http_url}/channels/sms/jobs/{job_id}",
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert stored.json()["enqueued_at"] == answer["status"]["enqueued_at"]


def test_python_client_enqueues_and_reads_the_status(served: Served, tmp_path: Path) -> None:
    generator = Path(sys.executable).with_name("openapi-python-client")
    package = f"channelkit_client_{uuid.uuid4().hex[:8]}"
    environ = dict(os.environ)
    # It formats what it writes with ruff, which is in this venv.
    environ["PATH"] = f"{generator.parent}{os.pathsep}{environ.get('PATH', '')}"
    _run(
        [
            generator,
            "generate",
            "--path",
            served.document_file,
            "--output-path",
            tmp_path / package,
            "--meta",
            "none",
        ],
        tmp_path,
        environ,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module(package)
        enqueue_sms = importlib.import_module(f"{package}.api.sms.enqueue_sms")
        get_sms_job = importlib.import_module(f"{package}.api.sms.get_sms_job")
        models = importlib.import_module(f"{package}.models")
    finally:
        sys.path.remove(str(tmp_path))

    with client_module.AuthenticatedClient(
        base_url=served.http_url, token=API_KEY, raise_on_unexpected_status=True
    ) as client:
        enqueued = enqueue_sms.sync(
            client=client, body=models.SmsPayload(to="+14155550100", body="hi from Python")
        )
        assert isinstance(enqueued, models.EnqueuedJob), enqueued
        status = get_sms_job.sync(enqueued.id, client=client)
    assert isinstance(status, models.JobStatus), status
    assert status.id == enqueued.id
    assert status.state is models.JobStatusState.WAITING
    assert status.enqueued_at is not None
    assert status.errors == []


def test_every_operation_tag_is_declared(served: Served) -> None:
    declared = {tag["name"] for tag in served.document["tags"]}
    used = {tag for _, _, operation in _operations(served.document) for tag in operation["tags"]}
    assert used == declared
    assert {"sms", "health"} <= used
