"""The HTTP baseline: a plain Litestar route that only validates the channel's payload.

    python bench/validate_app.py --project DIR --package PKG --channel CH --port N

`POST /channels/<CH>/jobs` takes the same generated pydantic model as Channelkit's
route and answers 202 with an id, storing nothing. Served like `runtime serve` serves
HTTP: uvicorn (log_config None, no access log, lifespan on) on uvloop. `GET
/health/ready` answers 200, for the start-up bench.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import uvicorn
import uvloop
from litestar import Litestar, get, post
from taskiq_worker import payload_model


def build_app(model: type[Any], channel: str) -> Litestar:
    async def enqueue(data: Any) -> dict[str, str]:
        return {"id": uuid.uuid4().hex, "channel": channel}

    # Litestar reads the body type from the annotation: the generated model.
    enqueue.__annotations__ = {"data": model, "return": dict[str, str]}
    route = post(f"/channels/{channel}/jobs", status_code=202)(enqueue)

    @get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return Litestar(route_handlers=[route, ready], openapi_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build_app(payload_model(args.project, args.package, args.channel), args.channel)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_config=None, lifespan="on", access_log=False
    )
    uvloop.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
