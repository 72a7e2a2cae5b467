"""Delivery guarantees of three `runtime serve` processes on a Redis Cluster: the rate
limiter across processes, retries with backoff, permanent errors and the failed set,
retrying from it, idempotent and delayed enqueue, retention, poison messages. The tests
are tests/runtime/test_delivery_jobs.py's, on the cluster (see conftest.py)."""

from __future__ import annotations

import pytest

from tests.runtime.test_delivery_jobs import *  # noqa: F403
from tests.runtime.test_delivery_jobs import shared

__all__ = ["shared"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),  # the first test also waits for the cluster and 3 processes
    pytest.mark.asyncio(loop_scope="module"),
]
