"""`/health/ready` follows Redis (docs/operations.md#health): 200 while a PING succeeds,
503 with the reason once the server is gone. The Redis is a private redis-server started
for this test and stopped by it (never the shared one)."""

from __future__ import annotations

from pathlib import Path

from runtime.serve.embedded_redis import EmbeddedRedis
from runtime.testing import running_app


async def test_ready_is_503_once_redis_is_down(tmp_path: Path) -> None:
    private = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        async with running_app(
            redis_url=private.url, enable_grpc=False, enable_workers=False
        ) as app:
            assert app.http is not None
            up = await app.http.get("/health/ready")
            assert up.status_code == 200, up.text
            assert up.json() == {"status": "ok"}

            private.stop()
            down = await app.http.get("/health/ready")
            assert down.status_code == 503, down.text
            assert down.json()["status"] == "unavailable"
            assert down.json()["reason"].startswith("Redis unreachable")
            live = await app.http.get("/health/live")
            assert live.status_code == 200, live.text
    finally:
        private.stop()
