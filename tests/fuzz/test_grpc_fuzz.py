"""Malformed, mistyped and oversized gRPC requests against a running reference server.

Raw `unary_unary` calls with identity serializers, so the bytes reach the server as they
are. No call may end in INTERNAL, UNKNOWN or a dead server; the oversized one must be
RESOURCE_EXHAUSTED; and a valid call succeeds after all of them.
"""

from __future__ import annotations

import random

import grpc
import pytest

from generated.proto import channels_pb2
from tests.fuzz.conftest import MAX_BODY_SIZE, ReferenceServer

ENQUEUE_SMS = "/channels.v1.ChannelsService/EnqueueSms"
SERVER_FAULTS = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
RANDOM_MESSAGES = 60


def _server_fault(code: grpc.StatusCode, details: str) -> bool:
    return code in SERVER_FAULTS


def _identity(data: bytes) -> bytes:
    return data


async def _call(target: str, request: bytes) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    ) as channel:
        method = channel.unary_unary(
            ENQUEUE_SMS, request_serializer=_identity, response_deserializer=_identity
        )
        try:
            await method(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, ""


def _valid() -> bytes:
    payload = channels_pb2.SmsPayload(to="+14155550100", body="hi")
    return channels_pb2.EnqueueSmsRequest(payload=payload).SerializeToString()


def _random_messages() -> list[bytes]:
    rng = random.Random(20261)
    messages = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(50)]
    valid = _valid()
    for _ in range(RANDOM_MESSAGES - len(messages)):  # flipped bytes in a valid message
        flipped = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        messages.append(bytes(flipped))
    return messages


async def test_random_bytes_are_refused_cleanly(reference_server: ReferenceServer) -> None:
    outcomes = []
    for message in _random_messages():
        code, details = await _call(reference_server.grpc_target, message)
        outcomes.append((message.hex()[:80], code.name, details[:120]))
    faults = [o for o in outcomes if _server_fault(grpc.StatusCode[o[1]], o[2])]
    assert not faults, f"{len(faults)} of {len(outcomes)} calls ended in a server fault: {faults}"
    assert await _call(reference_server.grpc_target, _valid()) == (grpc.StatusCode.OK, "")


# Field 1 (payload) sent as a varint, and as a fixed64; field 1 of the payload (`to`) as a
# varint; an unknown field number; a truncated length; a deeply nested group start.
WRONG_TYPES = {
    "payload as varint": b"\x08\x01",
    "payload as fixed64": b"\x09" + b"\x00" * 8,
    "to as varint": b"\x0a\x02\x08\x01",
    "body as nested message": b"\x0a\x06\x12\x04\x0a\x02\x08\x01",
    "unknown field": b"\xf8\x07\x01",
    "length past the end": b"\x0a\x7f\x0a",
    "group start": b"\x0b" * 200,
    "email request": channels_pb2.EnqueueEmailRequest(job_id="x").SerializeToString(),
}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
async def test_wrong_types_are_refused_cleanly(
    reference_server: ReferenceServer, name: str
) -> None:
    code, details = await _call(reference_server.grpc_target, WRONG_TYPES[name])
    assert not _server_fault(code, details), f"{name}: {code.name}: {details}"
    assert code != grpc.StatusCode.OK, f"{name}: accepted"
    assert await _call(reference_server.grpc_target, _valid()) == (grpc.StatusCode.OK, "")


async def test_a_message_over_max_body_size_is_resource_exhausted(
    reference_server: ReferenceServer,
) -> None:
    payload = channels_pb2.SmsPayload(to="+14155550100", body="x" * (MAX_BODY_SIZE + 100))
    request = channels_pb2.EnqueueSmsRequest(payload=payload).SerializeToString()
    assert len(request) > MAX_BODY_SIZE
    code, details = await _call(reference_server.grpc_target, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{code.name}: {details}"
    assert await _call(reference_server.grpc_target, _valid()) == (grpc.StatusCode.OK, "")


async def test_corrupt_wire_format_is_invalid_argument(reference_server: ReferenceServer) -> None:
    code, details = await _call(reference_server.grpc_target, WRONG_TYPES["length past the end"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details}"
