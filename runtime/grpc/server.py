"""The grpc.aio server: the generated ChannelsService and JobsService, health, reflection
(v1 and v1alpha), API keys.

With API keys set, every call needs one except health checks and reflection: enqueueing
(`channels.v1.ChannelsService`) and job administration (`channels.v1.JobsService`) alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from runtime.auth import ApiKeys

__all__ = [
    "ApiKeyInterceptor",
    "build_grpc_server",
]

# The generated services, as reflection lists them and health reports them.
# What a server interceptor calls to reach the method's handler. A string: grpc's
# RpcMethodHandler is generic only in its type stubs, not at runtime.
Continuation: TypeAlias = (
    "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]"
)
_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# grpcio-reflection implements only v1alpha. grpc.reflection.v1 is the same protocol under
# a new package: its request and response messages have the same fields and numbers
# (grpc/reflection/v1/reflection.proto was copied from v1alpha), so the v1alpha servicer,
# with v1alpha's (de)serializers, answers v1 clients byte for byte.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _register_reflection_v1() -> None:
    """Put grpc/reflection/v1/reflection.proto in the default descriptor pool (v1alpha's
    file under the v1 package), so that reflection can describe the v1 service it lists."""
    pool = descriptor_pool.Default()
    name = "grpc/reflection/v1/reflection.proto"
    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = name, "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(proto)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <key>` metadata, except on health and reflection."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = ApiKeys(keys)

        async def deny(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong API key: send metadata 'authorization: Bearer <key>'",
            )

        self._deny: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(deny)

    def _allowed(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        # The first `authorization` entry decides, as for an HTTP header.
        value = next((value for key, value in metadata or () if key == "authorization"), None)
        return self._keys.allows(value)

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_SERVICES) or self._allowed(
            handler_call_details.invocation_metadata
        ):
            return await continuation(handler_call_details)
        return self._deny


class _Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Bytes that are not the request message get INVALID_ARGUMENT, not UNKNOWN.

    grpc parses requests before any handler runs and answers a parse error with UNKNOWN
    (logging a traceback per call); here parsing failures reach the handler as a marker,
    which is refused like any other bad input.
    """

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        parse, inner = handler.request_deserializer, handler.unary_unary

        def safe_parse(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as error:
                return _Malformed(error)

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, _Malformed):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid message for this method: {request.error}",
                )
            return await inner(request, context)  # type: ignore[arg-type]  # stubs: sync context

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=safe_parse,
            response_serializer=handler.response_serializer,
        )


def build_grpc_server(
    add_services: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    *,
    api_keys: Sequence[str] = (),
    max_message_bytes: int = 4 * 1024 * 1024,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    reuse_port: bool = False,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    """The server with every service added (`service_names` are listed by reflection);
    call `start()` after binding a port. `interceptors` run after the API-key check.
    `reuse_port`: share the port with other processes (SO_REUSEPORT); off, a port in use
    is an error rather than a silent second listener."""
    chain = [
        *([ApiKeyInterceptor(api_keys)] if api_keys else []),
        MalformedRequestInterceptor(),
        *interceptors,
    ]
    server = grpc.aio.server(
        interceptors=chain,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", int(reuse_port)),
        ],
    )
    add_services(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    listed = (
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        REFLECTION_V1,
        reflection.SERVICE_NAME,
    )
    _register_reflection_v1()
    servicer = reflection.aio.ReflectionServicer(listed)
    for name in (REFLECTION_V1, reflection.SERVICE_NAME):
        handlers = {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)
    return server, health
