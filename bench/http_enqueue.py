"""HTTP enqueue: requests/s and p50/p99 of `POST /channels/<ch>/jobs`.

    .venv/bin/python bench/http_enqueue.py [--rounds 3] [--seconds 5] [--quick]

One `runtime serve` with ENABLE_WORKERS=false ENABLE_GRPC=false (enqueue alone), and the
baseline bench/validate_app.py (a plain Litestar route validating the same generated
model, uvicorn on uvloop). The load comes from bench/loadgen.py in its own process: 32
keep-alive connections, closed loop, 1 s warm-up, then the measured seconds. Cases,
order alternated per round:
  single:   POST /channels/notify/jobs, one realistic payload (benchlib.SAMPLE_PAYLOAD)
  batch:    POST /channels/notify/jobs/batch, 100 payloads a request (jobs/s = rps x 100)
  validate: the baseline route
Goals: enqueue >= 0.7x the validate-only route; batch >= 5x single per job.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Project, Row, Spread

CHANNEL = "notify"
CHANNELS = {
    CHANNEL: {
        "handler": "benchapp.handlers:noop",
        "concurrency": 100,
        "keep": {"completed": {"count": 1000}},
        "limiter": {"max": 1_000_000, "duration": "1s"},
    }
}
BATCH = 100


def load(kind: str, port: int, body: Path, seconds: float, **extra: Any) -> dict[str, Any]:
    argv = [
        benchlib.PY,
        str(benchlib.BENCH / "loadgen.py"),
        kind,
        "--port",
        str(port),
        "--body-file",
        str(body),
        "--seconds",
        str(seconds),
        "--warmup",
        str(min(1.0, seconds / 3)),
    ]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {kind} {extra} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"{kind} {extra}: {result['errors']} failed requests")
    return result


def baseline_app(project: Project, port: int, log: Path) -> benchlib.Proc:
    proc = benchlib.spawn(
        [
            benchlib.PY,
            str(benchlib.BENCH / "validate_app.py"),
            "--project",
            str(project.path),
            "--package",
            project.package,
            "--channel",
            CHANNEL,
            "--port",
            str(port),
        ],
        cwd=project.path,
        env={},
        log=log,
    )
    proc.ports = {"http": port}
    return proc


def run(quick: bool = False, rounds: int | None = None, seconds: float | None = None) -> list[Row]:
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (2.0 if quick else 5.0)
    samples: dict[str, list[dict[str, Any]]] = {"single": [], "batch": [], "validate": []}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        base = Path(scratch)
        project = benchlib.make_project(base, "bench_http", CHANNELS)
        one = base / "one.json"
        one.write_text(json.dumps(benchlib.SAMPLE_PAYLOAD))
        many = base / "many.json"
        many.write_text(json.dumps([benchlib.SAMPLE_PAYLOAD] * BATCH))
        prefix = benchlib.unique_prefix("http")
        server = benchlib.serve(
            project.path,
            project.package,
            prefix,
            grpc=False,
            workers=False,
            log=base / "serve.log",
        )
        plain = baseline_app(project, benchlib.free_port(), base / "validate.log")
        try:
            with benchlib.stopping(server, plain):
                benchlib.http_ready(server.ports["http"], proc=server)
                benchlib.http_ready(plain.ports["http"], proc=plain)
                path = f"/channels/{CHANNEL}/jobs"
                for index in range(rounds):
                    busy = benchlib.wait_quiet()
                    order = ["single", "batch", "validate"]
                    for case in order if index % 2 == 0 else order[::-1]:
                        if case == "single":
                            result = load("http", server.ports["http"], one, seconds, path=path)
                        elif case == "batch":
                            result = load(
                                "http", server.ports["http"], many, seconds, path=path + "/batch"
                            )
                        else:
                            result = load("http", plain.ports["http"], one, seconds, path=path)
                        samples[case].append(result)
                        print(
                            f"  http round {index + 1} {case}: {result['rps']:,.0f} req/s "
                            f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms "
                            f"(busy before round {busy:.0%})",
                            flush=True,
                        )
        finally:
            benchlib.delete_prefix(prefix)
    return rows(samples, rounds)


def rows(samples: dict[str, list[dict[str, Any]]], rounds: int) -> list[Row]:
    def spread(case: str, key: str, scale: float = 1.0) -> Spread:
        return Spread.of([s[key] * scale for s in samples[case]])

    single, batch, plain = (
        spread("single", "rps"),
        spread("batch", "rps", BATCH),
        spread("validate", "rps"),
    )
    vs_plain = statistics.median(
        a["rps"] / b["rps"] for a, b in zip(samples["single"], samples["validate"], strict=True)
    )
    batch_ratio = statistics.median(
        a["rps"] * BATCH / b["rps"]
        for a, b in zip(samples["batch"], samples["single"], strict=True)
    )

    def latency(case: str) -> str:
        p50, p99 = spread(case, "p50_ms").median, spread(case, "p99_ms").median
        return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"

    note = f"32 connections, median of {rounds} rounds (min-max)"
    return [
        Row(
            "http",
            "POST /jobs, one job a request (req/s)",
            single.text(),
            f"validate-only Litestar {plain.text()}",
            vs_plain,
            ">= 0.7x validate-only",
            vs_plain >= 0.7,
            note,
        ),
        Row(
            "http",
            "POST /jobs latency",
            latency("single"),
            f"validate-only {latency('validate')}",
            None,
            "",
            None,
            note,
        ),
        Row(
            "http",
            f"POST /jobs/batch, {BATCH} a request (jobs/s)",
            batch.text(),
            f"single POST /jobs {single.text()}",
            batch_ratio,
            ">= 5x single per job",
            batch_ratio >= 5,
            f"{note}; batch request latency {latency('batch')}",
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
