"""docs/grafana-dashboard.json: well-formed, and every query names a metric Channelkit exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bchannelkit_[A-Za-z0-9_]+")


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, rows' nested panels included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _query_panels(dashboard) for target in panel["targets"]]


def _exported_names() -> set[str]:
    """Sample names of a real registry, with one child per label set so that every
    metric shows its series (`_total`, `_created`, `_bucket`, `_count`, `_sum`)."""
    metrics = Metrics()
    channel = metrics.channel("email")
    channel.enqueued.inc()
    channel.run_seconds.observe(0.01)
    channel.wait_seconds.observe(0.01)
    metrics.set_depth("email", "waiting", 1)
    metrics.observe_http("/channels/email/jobs", "POST", 202, 0.001)
    metrics.observe_grpc("/channels.v1.ChannelsService/EnqueueEmail", "OK", 0.001)
    names = set()
    for line in metrics.render().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_has_a_prometheus_datasource_variable() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    channel = variables["channel"]
    assert channel["type"] == "query"
    assert "label_values(channelkit_jobs_started_total, channel)" in json.dumps(channel["query"])


def test_every_panel_has_targets_on_the_datasource_variable() -> None:
    dashboard = _dashboard()
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    panels = _query_panels(dashboard)
    assert panels
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}


def test_the_exposition_has_the_suffixed_names() -> None:
    names = _exported_names()
    assert "channelkit_jobs_started_total" in names
    assert "channelkit_job_run_seconds_bucket" in names
    assert "channelkit_queue_jobs" in names
    assert "channelkit_jobs_started" not in names  # counters are exposed as `_total`


@pytest.mark.parametrize("expr", _expressions(_dashboard()))
def test_every_expression_uses_exported_metrics(expr: str) -> None:
    used = set(METRIC_NAME.findall(expr))
    assert used, f"no channelkit metric in {expr!r}"
    unknown = used - _exported_names()
    assert not unknown, f"{sorted(unknown)} are not in runtime.engine.metrics.Metrics' exposition"
