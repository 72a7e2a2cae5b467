"""Payload string formats: what decoding and validating one message costs at the worker.

    .venv/bin/python bench/payload_formats.py [--rounds 5] [--quick]

In this process, on a generated project: the worker's own decode of a stream entry (the
channel's envelope model, `model_validate_json` of the bytes the producer wrote; see
runtime.engine.envelope) for a realistic order receipt (benchlib.RECEIPT_PAYLOAD: nested
objects, an array of lines, and an `email`, a `uuid`, a `date-time` and a `uri` field),
against the same payload with every `format` left out of its schema. Then one field alone,
per format, against a plain string field; and the generated `Email` against pydantic's
`EmailStr` (email-validator for every address), which the generated models used before.
Cases alternate within each round; µs per message = the round's time / messages, median
of the rounds (min-max).
Goal (issue 16): a payload with string formats decoded and validated in <= 8 µs.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import benchlib
from benchlib import Row, Spread
from pydantic import AnyUrl, AwareDatetime, EmailStr, Field, StrictStr, create_model

from runtime.engine.client import encode_job
from runtime.engine.email_format import Email
from runtime.engine.envelope import envelope_model
from runtime.engine.model import Payload

CHANNELS = {
    "receipt": {"handler": "benchapp.handlers:noop", "payload": benchlib.RECEIPT_SCHEMA},
    "receipt_plain": {
        "handler": "benchapp.handlers:noop",
        "payload": benchlib.without_formats(benchlib.RECEIPT_SCHEMA),
    },
}
GOAL_US = 8.0

# One field alone, by format: (the type a generated model uses, a valid value).
SINGLE_FIELDS: dict[str, tuple[Any, str]] = {
    "none (a plain string)": (StrictStr, "ada.lovelace@example.com"),
    "email (Email)": (Annotated[Email, Field(max_length=254)], "ada.lovelace@example.com"),
    "email (pydantic EmailStr)": (
        Annotated[EmailStr, Field(max_length=254)],
        "ada.lovelace@example.com",
    ),
    "uuid": (uuid.UUID, "6f1c2a9e-3b7d-4c51-9a0e-2d8b4f6a1c37"),
    "date-time": (AwareDatetime, "2026-11-30T17:42:05Z"),
    "uri": (AnyUrl, "https://shop.example.com/orders/6f1c2a9e/receipt"),
}


def per_message_us(decode: Callable[[bytes], Any], data: bytes, count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        decode(data)
    return (time.perf_counter() - began) * 1e6 / count


def channel_decoder(package: str, name: str) -> tuple[Callable[[bytes], Any], bytes]:
    registry = importlib.import_module(f"{package}.registry")
    channel = registry.CHANNELS_BY_NAME[name]
    envelope = envelope_model(channel)
    payload = channel.payload_model.model_validate(benchlib.RECEIPT_PAYLOAD)
    data = encode_job(name, payload, uuid.uuid4().hex)
    envelope.model_validate_json(data)  # valid, and warm
    return envelope.model_validate_json, data


def field_decoder(label: str, kind: Any, value: str) -> tuple[Callable[[bytes], Any], bytes]:
    model: Any = create_model(f"One_{abs(hash(label))}", __base__=Payload, value=(kind, ...))
    data = ('{"value": "' + value + '"}').encode()
    model.model_validate_json(data)
    return model.model_validate_json, data


def measure(
    cases: dict[str, tuple[Callable[[bytes], Any], bytes]], rounds: int, count: int
) -> dict[str, Spread]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            decode, data = cases[name]
            samples[name].append(per_message_us(decode, data, count))
    return {name: Spread.of(values) for name, values in samples.items()}


def run(quick: bool = False, rounds: int | None = None) -> list[Row]:
    rounds = rounds or (3 if quick else 7)
    count = 2000 if quick else 10000
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as scratch:
        project = benchlib.make_project(Path(scratch), "bench_formats", CHANNELS)
        sys.path.insert(0, str(project.path))
        try:
            benchlib.wait_quiet()
            whole = measure(
                {name: channel_decoder(project.package, name) for name in CHANNELS},
                rounds,
                count,
            )
            single = measure(
                {label: field_decoder(label, *spec) for label, spec in SINGLE_FIELDS.items()},
                rounds,
                count,
            )
        finally:
            sys.path.remove(str(project.path))
    return rows(whole, single, rounds)


def rows(whole: dict[str, Spread], single: dict[str, Spread], rounds: int) -> list[Row]:
    formats, plain = whole["receipt"], whole["receipt_plain"]
    note = f"in-process, median of {rounds} rounds (min-max)"
    out = [
        Row(
            "formats",
            "worker decode, receipt with email, uuid, date-time, uri (µs/message)",
            formats.text(2),
            f"same payload, no formats {plain.text(2)}",
            formats.median / plain.median,
            f"<= {GOAL_US:g} µs",
            formats.median <= GOAL_US,
            note,
        )
    ]
    anchor = single["none (a plain string)"]
    for label, spread in single.items():
        if label.startswith("none"):
            continue
        out.append(
            Row(
                "formats",
                f"one field, format {label} (µs/message)",
                spread.text(2),
                f"a plain string field {anchor.text(2)}",
                spread.median / anchor.median,
                "",
                None,
                note,
            )
        )
    ours, theirs = single["email (Email)"], single["email (pydantic EmailStr)"]
    out.append(
        Row(
            "formats",
            "one email field: generated Email vs pydantic EmailStr (µs/message)",
            ours.text(2),
            f"EmailStr {theirs.text(2)}",
            theirs.median / ours.median,
            "",
            None,
            "ratio = EmailStr / Email (higher is better); the same verdicts "
            "(tests/runtime/test_payload_formats.py)",
        )
    )
    return out


def main() -> None:
    parser = benchlib.arguments(__doc__)
    args = parser.parse_args()
    result = run(args.quick, args.rounds)
    benchlib.report(result, args.json)


if __name__ == "__main__":
    main()
