"""A Node.js client enqueues over gRPC with nothing but the .proto file: @grpc/grpc-js and
@grpc/proto-loader from npm (installed by `npm ci`, see .ci/run), against `runtime serve`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.runtime.conftest import APP, Probe, ServeFactory, events_of

MODULES = ROOT / "node_modules"
NEEDED = (MODULES / "@grpc" / "grpc-js", MODULES / "@grpc" / "proto-loader")

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not all(p.is_dir() for p in NEEDED),
    reason="node or the npm packages @grpc/grpc-js and @grpc/proto-loader are not installed: "
    "run `npm ci` (see .ci/run)",
)

# The client of docs/clients.md ("Node: @grpc/grpc-js and @grpc/proto-loader"), reading its
# target, .proto path, package and payload from argv and printing the reply as JSON.
CLIENT = """
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const [target, protoPath, pkg, method, payload] = process.argv.slice(2);
const definition = protoLoader.loadSync(protoPath, {
  keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
});
let service = grpc.loadPackageDefinition(definition);
for (const part of pkg.split(".")) service = service[part];
const client = new service.ChannelsService(target, grpc.credentials.createInsecure());
client[method]({ payload: JSON.parse(payload) }, (error, reply) => {
  if (error) {
    console.log(JSON.stringify({ code: error.code, details: error.details }));
  } else {
    console.log(JSON.stringify(reply));
  }
  client.close();
});
"""


def _run_client(
    folder: Path, target: str, proto: Path, method: str, payload: object
) -> dict[str, object]:
    script = folder / "client.js"
    script.write_text(CLIENT)
    done = subprocess.run(
        ["node", str(script), target, str(proto), "probe.v1", method, json.dumps(payload)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"NODE_PATH": str(MODULES), "PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr
    reply: dict[str, object] = json.loads(done.stdout)
    return reply


async def test_a_node_client_enqueues_with_proto_loader(
    serve: ServeFactory, probe: Probe, probe_project: Path, tmp_path: Path
) -> None:
    server = await serve()
    proto = probe_project / APP.split(".")[0] / "proto" / "probe" / "v1" / "channels.proto"
    reply = await asyncio.to_thread(
        _run_client, tmp_path, server.grpc_target, proto, "EnqueueFast", {"id": "from-node"}
    )
    assert reply["job_id"]
    events = await probe.wait_for(lambda seen: ("from-node", server.pid) in events_of(seen, "fast"))
    assert ("from-node", server.pid) in events_of(events, "fast")
    refused = await asyncio.to_thread(
        _run_client, tmp_path, server.grpc_target, proto, "EnqueueFast", {"id": ""}
    )
    assert refused["code"] == 3  # INVALID_ARGUMENT: id has minLength 1
    assert "id" in str(refused["details"])
