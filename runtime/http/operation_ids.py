"""Operation ids of the routes every channel's controller shares."""

from __future__ import annotations

from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.types import Method, OperationIDCreator

__all__ = ["operation_id"]


def operation_id(template: str) -> OperationIDCreator:
    """Operation ids with the channel in them (`get_sms_job`), as the generated enqueue
    routes have (`enqueue_sms`): what client generators name their functions after."""

    def create(_handler: HTTPRouteHandler, _method: Method, path: list[Any]) -> str:
        # The path is /channels/{name}/... (the generated controllers' `path`); Litestar
        # turns a controller into a router, so the handler no longer knows channel_name.
        channel = path[1] if len(path) > 1 and path[0] == "channels" else "_".join(map(str, path))
        return template.format(channel=channel)

    return create
