"""buf, an independent protobuf toolchain, on the generated contract.

`buf lint` with the STANDARD rules passes on the committed generated/ (the repository's
buf.yaml) and on the sample channels' edge cases; `buf breaking` (WIRE_JSON) agrees with
the proto checks of `--check-compat` on pairs of versions from test_compat.py. Skipped,
saying why, when `npm ci` has not installed buf (package.json's @bufbuild/buf).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.compat import check_compat, load_version
from generator.lock import lock_path
from generator.proto import proto_path, render_proto
from generator.render import proto_channels
from tests.conftest import ROOT
from tests.generator.test_compat import PAYLOAD, changed, write

BUF = ROOT / "node_modules" / ".bin" / "buf"
CONFIG = "version: v2\nlint:\n  use:\n    - STANDARD\nbreaking:\n  use:\n    - WIRE_JSON\n"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not BUF.is_file() or shutil.which("node") is None,
        reason="buf is not installed: run `npm ci` (package.json's @bufbuild/buf; see .ci/run)",
    ),
]


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=90
    )


def module(folder: Path, proto_text: str, package: str = "channels.v1") -> Path:
    """A buf module holding `proto_text` where buf expects it (`channels/v1/channels.proto`)."""
    file = folder / proto_path(package)
    file.parent.mkdir(parents=True)
    file.write_text(proto_text)
    (folder / "buf.yaml").write_text(CONFIG)
    return folder


def test_the_committed_proto_passes_buf_lint_standard() -> None:
    """The repository's buf.yaml: STANDARD, no exceptions, module generated/proto."""
    config = yaml.safe_load((ROOT / "buf.yaml").read_text())
    assert config["lint"] == {"use": ["STANDARD"]}  # no `except`, no `ignore`
    assert config["modules"] == [{"path": "generated/proto"}]
    assert (ROOT / "generated" / "proto" / "channels" / "v1" / "channels.proto").is_file()
    done = buf("lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_the_sample_channels_pass_buf_lint(tmp_path: Path) -> None:
    """Nested messages, enums, oneofs, keywords, maps, json_name: all STANDARD-clean."""
    spec = importlib.util.spec_from_file_location(
        "grpc_sample_buf", Path(__file__).parent / "fixtures" / "grpc_sample.py"
    )
    assert spec is not None
    assert spec.loader is not None
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    text = render_proto(sample.sample_channels(), "acme.jobs.v1")
    done = buf("lint", cwd=module(tmp_path, text, "acme.jobs.v1"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_lint_catches_what_the_generator_avoids(tmp_path: Path) -> None:
    """The check is live: the old names and layout fail the same rules."""
    text = 'syntax = "proto3";\npackage channels.v1;\nmessage Reply { string id = 1; }\n'
    text += "service Channels {\n  rpc Enqueue(Reply) returns (Reply);\n"
    text += "  rpc EnqueueBatch(Reply) returns (Reply);\n}\n"
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "channels.proto").write_text(text)
    (folder / "buf.yaml").write_text(CONFIG)
    found = buf("lint", cwd=folder).stdout
    assert 'must be within a directory "channels/v1"' in found
    assert 'Service name "Channels" should be suffixed with "Service"' in found
    assert "is used as the request or response type for multiple RPCs" in found
    assert 'RPC request type "Reply" should be named "EnqueueRequest"' in found


def _proto_of(config: Path) -> str:
    version = load_version(config)
    channels = proto_channels(version.config, version.schemas, version.lock)
    return render_proto(channels, version.config.proto_package)


def _renumber(config: Path) -> None:
    lock = lock_path(config)
    lock.write_text(lock.read_text().replace("sender_id: 3", "sender_id: 9"))


# (payload of the new version, whether both versions keep a lock, an edit of the new lock)
PAIRS: dict[str, tuple[dict[str, Any], bool, bool]] = {
    "identical": (PAYLOAD, True, False),
    "new-optional-field": (changed(note={"type": "string"}), True, False),
    "new-enum-value": (
        changed(priority={"enum": ["low", "normal", "high", "urgent"]}),
        True,
        False,
    ),
    "removed-field-reserved-by-the-lock": (changed(sender_id=None), True, False),
    "integer-to-number": (changed(retries={"type": "number"}), True, False),
    "changed-number-in-the-lock": (PAYLOAD, True, True),
    "removed-field-without-a-lock": (changed(sender_id=None), False, False),
}
WIRE_BREAKS = {"integer-to-number", "changed-number-in-the-lock", "removed-field-without-a-lock"}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_buf_breaking_agrees_with_check_compat_on_the_wire(tmp_path: Path, name: str) -> None:
    payload, lock, renumber = PAIRS[name]
    old = write(tmp_path / "old", PAYLOAD, lock=lock)
    write(tmp_path / "new", PAYLOAD, lock=lock)  # the new version starts from the old lock
    new = write(tmp_path / "new", payload, lock=lock)
    if renumber:
        _renumber(new)
    found = [str(change) for change in check_compat(new, str(old))]
    wire = [line for line in found if ": proto " in line]
    against = module(tmp_path / "buf-old", _proto_of(old))
    current = module(tmp_path / "buf-new", _proto_of(new))
    done = buf("breaking", str(current), "--against", str(against), cwd=tmp_path)
    assert done.returncode in (0, 100), done.stderr  # 100: breaking changes found
    assert bool(wire) == (done.returncode != 0), (wire, done.stdout)
    assert bool(wire) == (name in WIRE_BREAKS), wire
    if name == "removed-field-reserved-by-the-lock":
        # a payload break (producers sending it are rejected), but the wire is safe
        assert any("property removed" in line for line in found), found
        assert "reserved 3;" in _proto_of(new)
