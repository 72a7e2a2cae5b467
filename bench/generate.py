"""Generation time: the reference app, 100 synthetic channels, and an unchanged re-run.

    .venv/bin/python bench/generate.py [--rounds 3]

Each figure is the wall time of `python -m runtime generate` as a user runs it (a fresh
process, imports included), median of the rounds with min and max. Goals (issue 2):
100 channels under 10 s, an unchanged config under 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    case: str
    median_s: float
    min_s: float
    max_s: float


SYNTHETIC_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "recipient", "items"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "recipient": {"$ref": "#/$defs/Recipient"},
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Item"}},
        "priority": {"enum": ["low", "normal", "high"], "default": "normal"},
        "note": {"type": "string", "maxLength": 500},
        "send_at": {"type": "string", "format": "date-time"},
    },
    "$defs": {
        "Recipient": {
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "format": "email"},
                "name": {"type": "string"},
            },
        },
        "Item": {
            "type": "object",
            "required": ["sku", "quantity"],
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z0-9-]+$"},
                "quantity": {"type": "integer", "minimum": 1},
            },
        },
    },
}


def synthetic_project(folder: Path, channels: int) -> Path:
    (folder / "schema").mkdir(parents=True)
    (folder / "app").mkdir()
    (folder / "app" / "__init__.py").write_text("")
    lines = ["version: 1", "channels:"]
    handlers = []
    for index in range(channels):
        name = f"channel_{index:03d}"
        (folder / "schema" / f"{name}.json").write_text(json.dumps(SYNTHETIC_SCHEMA))
        lines += [
            f"  {name}:",
            f"    handler: app.handlers:handle_{index:03d}",
            f"    concurrency: {1 + index % 20}",
            f"    limiter: {{max: {10 + index}, duration: 1s}}",
            f"    payload: {{$ref: schema/{name}.json}}",
        ]
        handlers.append(
            f"async def handle_{index:03d}(payload: object) -> None:\n    return None\n"
        )
    (folder / "channels.yaml").write_text("\n".join(lines) + "\n")
    (folder / "app" / "handlers.py").write_text("\n\n".join(handlers))
    return folder


def timed_generate(project: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runtime", "generate"], cwd=project, check=True, capture_output=True
    )
    return time.perf_counter() - started


def measure(label: str, prepare: Callable[[], Path], rounds: int) -> Result:
    samples = [timed_generate(prepare()) for _ in range(rounds)]
    return Result(label, statistics.median(samples), min(samples), max(samples))


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        reference = base / "reference"
        shutil.copytree(
            ROOT,
            reference,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "generated", "tests", "bench", "docs", "__pycache__", ".*"
            ),
        )
        synthetic = synthetic_project(base / "synthetic", 100)

        def fresh(project: Path) -> Callable[[], Path]:
            def prepare() -> Path:
                shutil.rmtree(project / "generated", ignore_errors=True)
                return project

            return prepare

        results = [
            measure("reference app (4 channels), from scratch", fresh(reference), args.rounds),
            measure("100 synthetic channels, from scratch", fresh(synthetic), args.rounds),
            measure("100 synthetic channels, unchanged re-run", lambda: synthetic, args.rounds),
            measure("reference app, unchanged re-run", lambda: reference, args.rounds),
        ]
    width = max(len(r.case) for r in results)
    print(f"{'case':<{width}}  median    min      max")
    for r in results:
        print(f"{r.case:<{width}}  {r.median_s:.2f} s  {r.min_s:.2f} s  {r.max_s:.2f} s")
    return results


if __name__ == "__main__":
    main()
