"""The grpc.aio server: the generated Channels service, health, reflection, API keys."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

__all__ = ["GRPC_SERVICE_NAME", "ApiKeyInterceptor", "build_grpc_server"]

GRPC_SERVICE_NAME = "channels.v1.Channels"
_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <key>` metadata, except on health and reflection."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [key.encode() for key in keys]

        async def deny(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong API key: send metadata 'authorization: Bearer <key>'",
            )

        self._deny: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(deny)

    def _allowed(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _sep, token = text.partition(" ")
                supplied = token.strip().encode()
                return scheme.lower() == "bearer" and any(
                    hmac.compare_digest(supplied, known) for known in self._keys
                )
        return False

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_SERVICES) or self._allowed(
            handler_call_details.invocation_metadata
        ):
            return await continuation(handler_call_details)
        return self._deny


def build_grpc_server(
    add_services: Callable[[grpc.aio.Server], None],
    *,
    api_keys: Sequence[str] = (),
    max_message_bytes: int = 4 * 1024 * 1024,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    """The server with every service added; call `start()` after binding a port."""
    server = grpc.aio.server(
        interceptors=[ApiKeyInterceptor(api_keys)] if api_keys else None,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_services(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            GRPC_SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return server, health
