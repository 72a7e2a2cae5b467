"""Checks a JSON request body before Litestar decodes it into the route's model.

Litestar's decoder (msgspec) takes the last of duplicate keys, reads any media type as
JSON, answers an empty body with a confusing "data: 'data'", and a body nested 100,000
levels deep with a 500. Here a route that takes a body (`data`) gets:

    415  the media type is not JSON
    422  the body is empty, not JSON, nests deeper than MAX_DEPTH, or repeats a key

The body is read once (Litestar keeps it for the route) and parsed by the C JSON parser;
the only Python work per object is the duplicate-key check. Depth is read from the
brackets before any parser sees the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.datastructures import State
from litestar.status_codes import (
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

__all__ = ["MAX_DEPTH", "check_body_depth", "check_json_body"]

MAX_DEPTH = 64  # objects and arrays inside each other; payload schemas need a handful


class _DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


# A JSON string (escapes included); what is inside one is not structure.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")


def _too_deep(body: bytes, limit: int) -> bool:
    """True when `body` nests more than `limit` arrays and objects deep, read from its
    brackets outside strings: no parser runs on it, so a hostile depth never reaches
    one (a RecursionError inside a C decoder can leave the interpreter's recursion count
    off for the rest of the process)."""
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENING else -1
        if depth > limit:
            return True
    return False


def _refuse(status: int, field: str, message: str) -> Response[dict[str, Any]]:
    return Response(
        {
            "detail": f"invalid request: {field}: {message}",
            "errors": [{"field": field, "message": message}],
        },
        status_code=status,
        media_type=MediaType.JSON,
    )


async def check_json_body(request: Request[Any, Any, State]) -> Response[Any] | None:
    """Litestar `before_request` hook: None lets the request through."""
    if "data" not in request.route_handler.parsed_fn_signature.parameters:
        return None
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        return _refuse(
            HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "body",
            f"send Content-Type: application/json (got {media_type or 'none'})",
        )
    body = await request.body()
    if not body.strip():
        return _refuse(HTTP_422_UNPROCESSABLE_ENTITY, "body", "a JSON body is required")
    # Only a body with more brackets than the bound can nest past it: counting is a C scan.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _too_deep(body, MAX_DEPTH):
        return _refuse(
            HTTP_422_UNPROCESSABLE_ENTITY, "body", f"nests deeper than {MAX_DEPTH} levels"
        )
    try:
        json.loads(body, object_pairs_hook=_unique)
    except _DuplicateKey as error:
        return _refuse(HTTP_422_UNPROCESSABLE_ENTITY, "body", f"key {str(error)!r} appears twice")
    except ValueError as error:
        return _refuse(HTTP_422_UNPROCESSABLE_ENTITY, "body", f"not valid JSON: {error}")
    return None


async def check_body_depth(request: Request[Any, Any, State]) -> Response[Any] | None:
    """`before_request` hook of routes that parse their body themselves (GraphQL): only
    the depth bound (422), so that a hostile body never reaches their JSON parser."""
    if request.method != "POST":
        return None
    body = await request.body()
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _too_deep(body, MAX_DEPTH):
        return _refuse(
            HTTP_422_UNPROCESSABLE_ENTITY, "body", f"nests deeper than {MAX_DEPTH} levels"
        )
    return None
