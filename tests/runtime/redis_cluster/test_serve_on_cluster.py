"""`runtime serve` processes on a Redis Cluster: enqueue over HTTP, gRPC and the Python
producer, per-channel concurrency, two processes splitting a channel, a channel limited
by key, a killed process's job taken over. The tests are the single-Redis suite's,
imported here where `redis_url` is the cluster's (see conftest.py); the two other stalled
tests (tests/runtime/test_delivery_stalled.py) wait ~20 s each and add nothing a cluster
changes."""

from __future__ import annotations

import pytest

from tests.runtime.test_delivery_stalled import (
    test_a_job_killed_mid_run_runs_again_elsewhere_and_completes_once,
)
from tests.runtime.test_keyed_limiter import *  # noqa: F403
from tests.runtime.test_serve_api import (
    test_grpc_enqueue_runs_the_handler,
    test_http_enqueue_runs_the_handler,
    test_invalid_payload_is_refused_and_nothing_enqueued,
    test_python_producer_runs_the_handler,
)
from tests.runtime.test_serve_workers import (
    test_concurrency_bounds_a_channel_without_starving_the_others,
    test_two_processes_split_one_channel,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

__all__ = [
    "test_a_job_killed_mid_run_runs_again_elsewhere_and_completes_once",
    "test_concurrency_bounds_a_channel_without_starving_the_others",
    "test_grpc_enqueue_runs_the_handler",
    "test_http_enqueue_runs_the_handler",
    "test_invalid_payload_is_refused_and_nothing_enqueued",
    "test_python_producer_runs_the_handler",
    "test_two_processes_split_one_channel",
]
