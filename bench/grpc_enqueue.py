"""gRPC enqueue: requests/s and p50/p99 of unary `Enqueue<Ch>` and `Enqueue<Ch>Batch`.

    .venv/bin/python bench/grpc_enqueue.py [--rounds 3] [--seconds 5] [--quick]

One `runtime serve` with ENABLE_API=false ENABLE_WORKERS=false; the load is
bench/loadgen.py (grpc.aio, the project's generated stubs, 32 calls in flight) in its own
process. Cases alternate per round: unary with one realistic payload, batch with 100
payloads a call, and the baseline: the same unary call to bench/grpc_validate_app.py, a
bare grpc.aio server (uvloop) whose servicer only validates the message (the generated
servicer's conversion and pydantic validation, no interceptors, nothing stored).
Goal (issue 16): unary enqueue >= 0.7x the validate-only servicer. The baseline of the
batch figure is the unary one (per job).
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Row, Spread
from http_enqueue import BATCH, CHANNEL, CHANNELS, load


def run(quick: bool = False, rounds: int | None = None, seconds: float | None = None) -> list[Row]:
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (2.0 if quick else 5.0)
    samples: dict[str, list[dict[str, Any]]] = {"unary": [], "batch": [], "validate": []}
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as scratch:
        base = Path(scratch)
        project = benchlib.make_project(base, "bench_grpc", CHANNELS)
        one = base / "one.json"
        one.write_text(json.dumps(benchlib.SAMPLE_PAYLOAD))
        prefix = benchlib.unique_prefix("grpc")
        # HTTP stays on only for the readiness probe; the load goes to gRPC alone.
        server = benchlib.serve(
            project.path, project.package, prefix, workers=False, log=base / "serve.log"
        )
        common = {"project": str(project.path), "package": project.package, "channel": CHANNEL}
        plain = validate_app(project, base / "validate.log")
        try:
            with benchlib.stopping(server, plain):
                benchlib.http_ready(server.ports["http"], proc=server)
                wait_grpc(plain)
                for index in range(rounds):
                    busy = benchlib.wait_quiet()
                    order = ["unary", "batch", "validate"]
                    for case in order if index % 2 == 0 else order[::-1]:
                        extra = common | ({"batch": BATCH} if case == "batch" else {})
                        port = (plain if case == "validate" else server).ports["grpc"]
                        result = load("grpc", port, one, seconds, **extra)
                        samples[case].append(result)
                        print(
                            f"  grpc round {index + 1} {case}: {result['rps']:,.0f} calls/s "
                            f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms "
                            f"(busy before round {busy:.0%})",
                            flush=True,
                        )
        finally:
            benchlib.delete_prefix(prefix)
    return rows(samples, rounds)


def validate_app(project: benchlib.Project, log: Path) -> benchlib.Proc:
    port = benchlib.free_port()
    argv = [benchlib.PY, str(benchlib.BENCH / "grpc_validate_app.py")]
    argv += ["--project", str(project.path), "--package", project.package, "--port", str(port)]
    proc = benchlib.spawn(argv, cwd=project.path, env={}, log=log)
    proc.ports = {"grpc": port}
    return proc


def wait_grpc(proc: benchlib.Proc, timeout: float = 60.0) -> None:
    """Until the server accepts a connection on its gRPC port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"validate-only gRPC server exited:\n{proc.tail()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", proc.ports["grpc"]), timeout=1),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError("validate-only gRPC server did not listen")


def rows(samples: dict[str, list[dict[str, Any]]], rounds: int) -> list[Row]:
    def spread(case: str, key: str, scale: float = 1.0) -> Spread:
        return Spread.of([s[key] * scale for s in samples[case]])

    def latency(case: str) -> str:
        p50, p99 = spread(case, "p50_ms").median, spread(case, "p99_ms").median
        return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"

    unary, batch = spread("unary", "rps"), spread("batch", "rps", BATCH)
    plain = spread("validate", "rps")
    vs_plain = statistics.median(
        a["rps"] / b["rps"] for a, b in zip(samples["unary"], samples["validate"], strict=True)
    )
    ratio = statistics.median(
        a["rps"] * BATCH / b["rps"] for a, b in zip(samples["batch"], samples["unary"], strict=True)
    )
    note = f"32 calls in flight, median of {rounds} rounds (min-max)"
    return [
        Row(
            "grpc",
            f"Enqueue{CHANNEL.capitalize()} unary (calls/s)",
            unary.text(),
            f"validate-only grpc.aio {plain.text()}",
            vs_plain,
            ">= 0.7x validate-only",
            vs_plain >= 0.7,
            note,
        ),
        Row(
            "grpc",
            "unary latency",
            latency("unary"),
            f"validate-only {latency('validate')}",
            None,
            "",
            None,
            note,
        ),
        Row(
            "grpc",
            f"Enqueue{CHANNEL.capitalize()}Batch, {BATCH} a call (jobs/s)",
            batch.text(),
            f"unary {unary.text()}",
            ratio,
            "",
            None,
            f"{note}; batch call latency {latency('batch')}",
        ),
    ]


def main() -> None:
    parser = benchlib.arguments(__doc__)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    result = run(args.quick, args.rounds, args.seconds)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
