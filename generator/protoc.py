"""Compile `channels.proto` into Python modules and typed stubs, in-process.

`grpc_tools.protoc` writes the runtime modules (`channels_pb2.py`, `channels_pb2_grpc.py`);
mypy-protobuf's plugins write the stubs that pass `mypy --strict` (`channels_pb2.pyi`,
`channels_pb2_grpc.pyi`). The .proto sits where buf wants it, in the folder of its proto
package (`channels/v1/channels.proto` for `channels.v1`), under the Python package's
`proto/` folder; protoc's include root is the folder above the Python package
(`<tmp>/protos/generated/proto/channels/v1/channels.proto`), so the stubs land beside the
.proto and import each other as `from generated.proto.channels.v1 import channels_pb2`.
Each segment of the proto package is therefore a Python package name too.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from generator.errors import GeneratorError
from generator.proto import PROTO_FILE_NAME, PROTO_PACKAGE, proto_path

__all__ = ["ProtocError", "compile_proto", "stub_folder"]

_OUTPUTS = ("channels_pb2.py", "channels_pb2.pyi", "channels_pb2_grpc.py", "channels_pb2_grpc.pyi")
_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_PLUGINS = {"protoc-gen-mypy": "mypy_out", "protoc-gen-mypy_grpc": "mypy_grpc_out"}


class ProtocError(GeneratorError, RuntimeError):
    """protoc (or one of its plugins) refused the generated .proto or could not run.

    `stderr` holds what protoc printed; it names the line of `channels.proto` at fault.
    """

    def __init__(self, message: str, stderr: str = "") -> None:
        self.stderr = stderr
        super().__init__(f"{message}\n{stderr}".rstrip() if stderr else message)


def stub_folder(proto_package: str) -> str:
    """The folder of channels.proto and its stubs inside `<package>/proto/` (`channels/v1`)."""
    return proto_path(proto_package).rsplit("/", 1)[0]


def compile_proto(
    proto_text: str, package: str, proto_package: str = PROTO_PACKAGE
) -> dict[str, str]:
    """Compile `proto_text` (of proto package `proto_package`) for the Python package
    `package` (dotted, e.g. `generated`).

    Returns the four files that belong in `<package>/proto/`, keyed by their path there
    (`channels/v1/channels_pb2.py`).
    """
    for name, what in ((package, "Python package"), (proto_package, "proto package")):
        parts = name.split(".")
        if not _PACKAGE.fullmatch(name) or any(keyword.iskeyword(part) for part in parts):
            raise ProtocError(f"invalid {what} name {name!r}: each part must be a Python name")
    plugins = {name: _find_plugin(name) for name in _PLUGINS}
    with tempfile.TemporaryDirectory(prefix="channelkit-protoc-") as tmp:
        root = Path(tmp)
        folder = stub_folder(proto_package)
        rel = Path(*package.split("."), "proto", *folder.split("/"))
        proto_dir = root / "protos" / rel
        proto_dir.mkdir(parents=True)
        (proto_dir / PROTO_FILE_NAME).write_text(proto_text, encoding="utf-8")
        out = root / "out"
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"-I{root / 'protos'}",
            f"-I{resources.files('grpc_tools') / '_proto'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *(f"--plugin={name}={path}" for name, path in plugins.items()),
            *(f"--{flag}={out}" for flag in _PLUGINS.values()),
            str(proto_dir / PROTO_FILE_NAME),
        ]
        code, stderr = _run_protoc(args)
        if code != 0:
            raise ProtocError(f"protoc failed with exit code {code} on {PROTO_FILE_NAME}", stderr)
        files: dict[str, str] = {}
        for name in _OUTPUTS:
            path = out / rel / name
            if not path.is_file():
                raise ProtocError(f"protoc did not write {name}", stderr)
            files[f"{folder}/{name}"] = path.read_text(encoding="utf-8")
        return files


def _find_plugin(name: str) -> str:
    """The plugin script installed beside this interpreter (the virtualenv's bin/), else PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ProtocError(f"{name} not found: pip install mypy-protobuf")
    return found


def _run_protoc(args: list[str]) -> tuple[int, str]:
    """Run `grpc_tools.protoc.main` and capture what it writes to file descriptor 2.

    protoc is C++ and prints its diagnostics to the process's stderr, not `sys.stderr`,
    so the descriptor itself is redirected for the duration of the call.
    """
    from grpc_tools import protoc  # heavy import, only when compiling

    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        try:
            os.dup2(capture.fileno(), 2)
            code = int(protoc.main(args))
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        capture.seek(0)
        stderr = capture.read().decode("utf-8", errors="replace")
    return code, stderr
