"""The contract between generated code and the runtime: `runtime.generated_support`.

Generated code imports no other runtime module, every name the contract exports resolves,
and a producer-only user (models, producers, processors) does not pay for Litestar or grpc.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_python
from tests.generator.test_output import GOLDEN

SUPPORT = "runtime.generated_support"


def runtime_imports(source: str) -> set[str]:
    """Every `runtime...` module a Python source imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found.update(m for m in modules if m == "runtime" or m.startswith("runtime."))
    return found


GENERATED_FILES = sorted(
    [
        *(ROOT / "generated").rglob("*.py"),
        *(ROOT / "generated").rglob("*.pyi"),
        *GOLDEN.rglob("*.py"),
    ]
)


@pytest.mark.parametrize(
    "path", GENERATED_FILES, ids=[p.relative_to(ROOT).as_posix() for p in GENERATED_FILES]
)
def test_generated_code_imports_only_the_support_module(path: Path) -> None:
    assert runtime_imports(path.read_text(encoding="utf-8")) <= {SUPPORT}


def test_the_scan_sees_generated_code() -> None:
    # Guards the test above against scanning nothing.
    routes = (ROOT / "generated" / "routes.py").read_text(encoding="utf-8")
    assert runtime_imports(routes) == {SUPPORT}
    assert len(GENERATED_FILES) > 20


def test_every_exported_name_resolves() -> None:
    support = importlib.import_module(SUPPORT)
    for name in support.__all__:
        assert getattr(support, name, None) is not None, name
    assert set(dir(support)) >= set(support.__all__)
    public = {
        name
        for name, value in vars(support).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("runtime.")
    }
    assert public <= set(support.__all__), sorted(public - set(support.__all__))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = support.Nope


def test_a_producer_imports_neither_litestar_nor_grpc() -> None:
    script = (
        "import sys\n"
        "import generated.channels.email, generated.processors.email, generated.models.sms\n"
        "import runtime.generated_support as support\n"
        "assert support.Client is not None and support.Payload is not None\n"
        "heavy = ('litestar', 'grpc', 'grpc_health', 'grpc_reflection', 'uvicorn')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    completed = run_python(script)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_transport_names_load_on_first_use() -> None:
    script = (
        "import sys\n"
        "import runtime.generated_support as support\n"
        "assert 'litestar' not in sys.modules\n"
        "assert support.JobRoutes.__module__ == 'runtime.http.routes'\n"
        "assert 'litestar' in sys.modules\n"
        "assert support.JobsServicer.__module__ == 'runtime.grpc.jobs'\n"
        "assert 'JobsServicer' in vars(support)\n"
    )
    completed = run_python(script)
    assert completed.returncode == 0, completed.stderr
