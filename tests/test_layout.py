"""The import direction inside `runtime/`, read from the source with `ast`.

    runtime.serve, runtime.cli      compose everything below
    runtime.http    runtime.grpc    runtime.graphql    one transport each; none imports
                                                       another
    runtime.engine                  Redis, jobs, workers: no web or RPC framework
    runtime.auth, runtime.errors    shared by all, import no transport

Every import counts: module level, inside functions, under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_python

RUNTIME = ROOT / "runtime"

WEB = ("litestar", "uvicorn")
RPC = ("grpc", "grpc_health", "grpc_reflection")
GRAPHQL = ("strawberry", "graphql")
TRANSPORTS = (
    *WEB,
    *RPC,
    *GRAPHQL,
    "runtime.http",
    "runtime.grpc",
    "runtime.graphql",
    "runtime.serve",
    "runtime.cli",
)

# (the modules a rule covers, the imports they must not make, why)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("runtime.engine", TRANSPORTS, "the engine imports no web or RPC framework"),
    (
        "runtime.http",
        (*RPC, *GRAPHQL, "runtime.grpc", "runtime.graphql", "runtime.serve", "runtime.cli"),
        "the HTTP transport imports neither gRPC, GraphQL nor what composes it",
    ),
    (
        "runtime.grpc",
        (*WEB, *GRAPHQL, "runtime.http", "runtime.graphql", "runtime.serve", "runtime.cli"),
        "the gRPC transport imports neither HTTP, GraphQL nor what composes it",
    ),
    (
        "runtime.graphql",
        (*RPC, "uvicorn", "runtime.http", "runtime.grpc", "runtime.serve", "runtime.cli"),
        "the GraphQL transport (strawberry on Litestar) imports neither the HTTP nor the "
        "gRPC transport, nor what composes it",
    ),
    (
        "runtime.ui",
        (*RPC, "runtime.http", "runtime.grpc", "runtime.serve", "runtime.cli"),
        "the dashboard is pages on the engine: no gRPC, and nothing that composes it",
    ),
    ("runtime.auth", TRANSPORTS, "shared by both transports, so it imports neither"),
    ("runtime.errors", TRANSPORTS, "raised everywhere, so it imports no transport"),
]

# Breaches in the code today, each to be removed with its fix: (module, forbidden import).
# None now (runtime.grpc.jobs took Enqueuer from runtime.http until it moved to the engine).
KNOWN: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    module: str  # the absolute dotted name imported
    line: int
    source: str  # the statement as written


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every module `source` imports, absolute; `from a import b` counts as `a` and `a.b`
    (b may be a submodule: `from runtime import http`)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            text = ast.unparse(node)
            found += [Import(alias.name, node.lineno, text) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            text = ast.unparse(node)
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(Import(base, node.lineno, text))
            found += [
                Import(f"{base}.{alias.name}", node.lineno, text)
                for alias in node.names
                if alias.name != "*"
            ]
    return found


def is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations() -> dict[tuple[str, str], list[str]]:
    """Each breach by (module, forbidden import), with its lines described."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(RUNTIME.rglob("*.py")):
        module = module_name(path)
        imports = imports_of(
            path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
        )
        for covered, forbidden, why in RULES:
            if not is_within(module, covered):
                continue
            seen: set[tuple[int, str]] = set()
            for item in imports:
                bad = next((f for f in forbidden if is_within(item.module, f)), None)
                if bad is None or (item.line, bad) in seen:
                    continue
                seen.add((item.line, bad))
                where = path.relative_to(ROOT).as_posix()
                found.setdefault((module, bad), []).append(
                    f"{where}:{item.line}: {module} imports {bad} (`{item.source}`): {why}"
                )
    return found


def test_runtime_imports_follow_the_layers() -> None:
    found = violations()
    problems = [line for key, lines in found.items() if key not in KNOWN for line in lines]
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_known_breaches_are_still_there() -> None:
    """A fixed breach leaves KNOWN, so it cannot come back unnoticed."""
    fixed = KNOWN - set(violations())
    assert not fixed, f"no longer imported, remove from KNOWN in tests/test_layout.py: {fixed}"


def test_every_rule_covers_existing_modules() -> None:
    """A renamed package would leave its rule checking nothing."""
    modules = {module_name(path) for path in RUNTIME.rglob("*.py")}
    for covered, _forbidden, _why in RULES:
        assert any(is_within(module, covered) for module in modules), covered


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import litestar", "litestar"),
        ("import grpc.aio as aio", "grpc.aio"),
        ("from runtime import http", "runtime.http"),
        ("from runtime.serve.settings import ServeSettings", "runtime.serve.settings"),
        ("from ..http import app", "runtime.http.app"),
        ("from . import keys", "runtime.engine.keys"),
        ("def f():\n    import uvicorn\n", "uvicorn"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from grpc import aio\n",
            "grpc",
        ),
    ],
)
def test_imports_of_finds_every_kind_of_import(source: str, expected: str) -> None:
    found = {item.module for item in imports_of(source, "runtime.engine.client")}
    assert expected in found


def test_a_layer_breach_is_reported_with_module_and_import() -> None:
    imports = imports_of("import os\n\nfrom litestar import Litestar\n", "runtime.engine.x")
    bad = [item for item in imports if any(is_within(item.module, f) for f in TRANSPORTS)]
    assert [(item.module, item.line, item.source) for item in bad] == [
        ("litestar", 3, "from litestar import Litestar"),
        ("litestar.Litestar", 3, "from litestar import Litestar"),
    ]


def test_importing_the_engine_loads_no_transport() -> None:
    """The runtime view of the rule: what an import really pulls in, transitively."""
    code = (
        "import sys\n"
        "import runtime.engine.client, runtime.engine.consumer, runtime.engine.workers\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'litestar', 'grpc', 'uvicorn', 'strawberry', 'graphql'})))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert not loaded, f"importing runtime.engine loads transports: {loaded}"
