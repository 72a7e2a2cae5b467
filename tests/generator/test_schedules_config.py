"""channels.yaml `schedules:`: each bad cron, time zone, interval, date or payload is a
config error with file:line:col and key path (exit 2, nothing written); a good one is
written into the generated registry."""

from __future__ import annotations

import importlib
import re
import sys

import pytest

from runtime.engine.schedules import Schedule
from tests.generator.conftest import CHANNELS_YAML, ProjectFactory
from tests.generator.test_config_errors import run_generate

# Appended to the last channel, `invoices` (payload: invoice_id >= 1, note).
GOOD = """\
    schedules:
      nightly:
        cron: "30 2 * * *"
        timezone: Europe/Berlin
        payload: {invoice_id: 7, note: nightly}
        catch_up: skip
      every-minute:
        every: 1m
        payload: {invoice_id: 8}
        start: 2026-01-01T00:00:00+00:00
        paused: true
"""


def with_schedule(block: str) -> str:
    return CHANNELS_YAML + "    schedules:\n" + block


BAD = {
    "bad cron": (
        "      s:\n        cron: '61 * * * *'\n        payload: {invoice_id: 1}\n",
        r"channels.yaml:27:15: channels.invoices.schedules.s.cron: "
        r"bad cron expression '61 \* \* \* \*': Bad minute",
    ),
    "cron with 4 fields": (
        "      s:\n        cron: '* * * *'\n        payload: {invoice_id: 1}\n",
        r"channels.yaml:27:15: channels.invoices.schedules.s.cron: .*expected 5 fields",
    ),
    "bad time zone": (
        "      s:\n        cron: '0 8 * * *'\n        timezone: Europe/Paris2\n"
        "        payload: {invoice_id: 1}\n",
        r"channels.yaml:28:19: channels.invoices.schedules.s.timezone: "
        r"unknown time zone 'Europe/Paris2'",
    ),
    "interval too short": (
        "      s:\n        every: 10ms\n        payload: {invoice_id: 1}\n",
        r"channels.yaml:27:16: channels.invoices.schedules.s.every: from 1s to 366d",
    ),
    "bad interval": (
        "      s:\n        every: daily\n        payload: {invoice_id: 1}\n",
        r"channels.yaml:27:16: channels.invoices.schedules.s.every: bad duration 'daily'",
    ),
    "cron and every": (
        "      s:\n        cron: '0 8 * * *'\n        every: 1h\n"
        "        payload: {invoice_id: 1}\n",
        r"channels.yaml:26:7: channels.invoices.schedules.s: schedule 's': "
        r"give either `cron` or `every`",
    ),
    "bad start": (
        "      s:\n        every: 1h\n        start: next monday\n"
        "        payload: {invoice_id: 1}\n",
        r"channels.yaml:28:16: channels.invoices.schedules.s.start: expected an ISO 8601",
    ),
    "payload breaks the schema": (
        "      s:\n        every: 1h\n        payload: {invoice_id: 0}\n",
        r"channels.yaml:28:31: channels.invoices.schedules.s.payload.invoice_id: "
        r"schedule 's': the payload does not match the channel's payload schema: "
        r"0 is less than the minimum of 1",
    ),
    "payload misses a field": (
        "      s:\n        every: 1h\n        payload: {note: hi}\n",
        r"channels.invoices.schedules.s.payload: schedule 's': .*'invoice_id' is a required",
    ),
    "bad catch_up": (
        "      s:\n        every: 1h\n        catch_up: always\n        payload: {invoice_id: 1}\n",
        r"channels.invoices.schedules.s.catch_up: 'always' is not one of \['once', 'skip'\]",
    ),
    "bad name": (
        "      'not ok':\n        every: 1h\n        payload: {invoice_id: 1}\n",
        r"channels.invoices.schedules",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_schedule_is_a_config_error(
    case: str, make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    block, expected = BAD[case]
    project = make_project(channels_yaml=with_schedule(block))
    code, err = run_generate(project, capsys)
    assert code == 2, err
    assert re.search(expected, err), f"expected /{expected}/ in:\n{err}"
    assert "nothing was written" in err
    assert not (project / "generated_shop").exists()


def test_schedules_are_written_into_the_registry(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(channels_yaml=CHANNELS_YAML + GOOD)
    code, err = run_generate(project, capsys)
    assert code == 0, err
    sys.path.insert(0, str(project))
    try:
        registry = importlib.import_module("generated_shop.registry")
        channel = registry.CHANNELS_BY_NAME["invoices"]
        assert channel.schedules == (
            Schedule(
                name="every-minute",
                payload={"invoice_id": 8},
                every_ms=60_000,
                start_ms=1_767_225_600_000,
                paused=True,
            ),
            Schedule(
                name="nightly",
                payload={"invoice_id": 7, "note": "nightly"},
                cron="30 2 * * *",
                timezone="Europe/Berlin",
                catch_up="skip",
            ),
        )
        assert registry.CHANNELS_BY_NAME["orders"].schedules == ()
    finally:
        sys.path.remove(str(project))
        for name in [m for m in sys.modules if m.startswith("generated_shop")]:
            del sys.modules[name]
