"""Start-up time to ready, and generation time (bench/generate.py's own table).

    .venv/bin/python bench/startup.py [--rounds 7] [--quick]

Start-up: from spawning `python -m runtime serve` (the repo's reference app, everything
on: HTTP, gRPC, four channels' workers) until GET /health/ready answers 200, polled
every 5 ms. Baseline, alternated per round: bench/validate_app.py (uvicorn + a Litestar
route validating the sms model) until its /health/ready answers 200.
Generation: bench/generate.py run as is (fresh processes, median of its rounds); its
goals are 100 channels under 10 s and an unchanged re-run under 1 s.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
from pathlib import Path

import benchlib
from benchlib import Row, Spread


def time_serve(base: Path, index: int) -> float:
    prefix = benchlib.unique_prefix("start")
    proc = benchlib.serve(benchlib.ROOT, "generated", prefix, log=base / f"serve-{index}.log")
    try:
        with benchlib.stopping(proc):
            return benchlib.http_ready(proc.ports["http"], proc=proc) - proc.started
    finally:
        benchlib.delete_prefix(prefix)


def time_plain(base: Path, index: int) -> float:
    port = benchlib.free_port()
    argv = [benchlib.PY, str(benchlib.BENCH / "validate_app.py"), "--project", str(benchlib.ROOT)]
    argv += ["--package", "generated", "--channel", "sms", "--port", str(port)]
    proc = benchlib.spawn(argv, cwd=benchlib.ROOT, env={}, log=base / f"plain-{index}.log")
    with benchlib.stopping(proc):
        return benchlib.http_ready(port, proc=proc) - proc.started


def startup_rows(rounds: int) -> list[Row]:
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as scratch:
        base = Path(scratch)
        benchlib.wait_quiet()
        for index in range(rounds):
            pair = [("ours", time_serve), ("plain", time_plain)]
            for label, timer in pair if index % 2 == 0 else pair[::-1]:
                seconds = timer(base, index)
                (ours if label == "ours" else theirs).append(seconds)
                print(f"  startup round {index + 1} {label}: {seconds:.2f} s", flush=True)
    ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
    return [
        Row(
            "startup",
            "runtime serve, reference app, to /health/ready 200 (s)",
            Spread.of(ours).text(2),
            f"plain Litestar+uvicorn app {Spread.of(theirs).text(2)}",
            ratio,
            "",
            None,
            f"HTTP + gRPC + 4 channels' workers; median of {rounds} rounds (min-max); "
            "ratio = ours / baseline (lower is better)",
        )
    ]


GOALS = {
    "100 synthetic channels, from scratch": 10.0,
    "100 synthetic channels, unchanged re-run": 1.0,
}
LINE = re.compile(r"^(?P<case>.+?)\s+(?P<median>[\d.]+) s\s+(?P<min>[\d.]+) s\s+(?P<max>[\d.]+) s$")


def generation_rows(rounds: int) -> tuple[list[Row], str]:
    """Runs bench/generate.py; returns its rows and its table as printed."""
    done = subprocess.run(
        [benchlib.PY, str(benchlib.BENCH / "generate.py"), "--rounds", str(rounds)],
        cwd=benchlib.ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in done.stdout.splitlines():
        match = LINE.match(line.strip())
        if not match:
            continue
        case, median = match["case"].strip(), float(match["median"])
        goal = GOALS.get(case)
        rows.append(
            Row(
                "generate",
                f"{case} (s)",
                f"{median:.2f} ({float(match['min']):.2f}-{float(match['max']):.2f})",
                f"goal {goal:g} s" if goal else "",
                median / goal if goal else None,
                f"< {goal:g} s" if goal else "",
                (median < goal) if goal else None,
                f"bench/generate.py, median of {rounds} rounds (min-max); ratio = time / goal",
            )
        )
    return rows, done.stdout


def run(quick: bool = False, rounds: int | None = None) -> tuple[list[Row], str]:
    rounds = rounds or (3 if quick else 7)
    rows = startup_rows(rounds)
    generated, table = generation_rows(1 if quick else 3)
    return rows + generated, table


def main() -> None:
    parser = benchlib.arguments(__doc__)
    args = parser.parse_args()
    result, table = run(args.quick, args.rounds)
    print(table)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
