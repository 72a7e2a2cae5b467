"""gRPC requests become the dict a JSON client would send, and are validated like HTTP."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from pydantic import BaseModel

from runtime.engine.client import JobRequest
from runtime.grpc.payload import PayloadInvalid, to_json, validate, validate_batch

FIXTURES = Path(__file__).resolve().parents[1] / "generator" / "fixtures"
PACKAGE = "ckgrpc_runtime"


def _load_sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grpc_sample_rt", FIXTURES / "grpc_sample.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Generated:
    pb: ModuleType  # channels_pb2
    grpc: ModuleType  # channels_pb2_grpc
    service: ModuleType  # grpc_service
    email: type[BaseModel]
    push: type[BaseModel]


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    _load_sample().build_package(tmp_path_factory.mktemp("grpc"), PACKAGE)
    return Generated(
        pb=importlib.import_module(f"{PACKAGE}.proto").channels_pb2,
        grpc=importlib.import_module(f"{PACKAGE}.proto").channels_pb2_grpc,
        service=importlib.import_module(f"{PACKAGE}.grpc_service"),
        email=importlib.import_module(f"{PACKAGE}.models.email").EmailPayload,
        push=importlib.import_module(f"{PACKAGE}.models.push_alerts").PushAlertsPayload,
    )


def good_email(gen: Generated, **overrides: Any) -> Any:
    p = gen.pb.EmailPayload
    values: dict[str, Any] = {
        "recipients": [p.Recipient(email="ann@example.com", name="Ann")],
        "subject": "Hello",
        "body": "Hi Ann",
        "retries": 2,
        "track_opens": True,
        "level": p.LEVEL_3,
        "priority": p.PRIORITY_HIGH_PRIORITY,
        "send_at": "2026-11-29T10:00:00Z",
        "send_on": "2026-11-30",
        "campaign_id": "6f1c0f4e-7a8b-4c39-9a3e-2f1f6d3b8c11",
        "link": "https://example.com/x",
        "score": 0.5,
        "tags": ["welcome", "new"],
        "headers": {"X-Mailer": "ck"},
        "attachments": {"a": p.Attachment(filename="a.pdf", size=10)},
        "route": p.Route(api=p.ApiRoute(endpoint="https://mail.example.com/send")),
        "reference": p.Reference(integer_value=42),
        "tracking": p.Tracking(pixel=False, domain="t.example.com"),
        "reply_to": "support@example.com",
    }
    values.update(overrides)
    return p(**values)


GOOD_EMAIL_JSON = {
    "recipients": [{"email": "ann@example.com", "name": "Ann"}],
    "subject": "Hello",
    "body": "Hi Ann",
    "kind": "email",
    "reply_to": "support@example.com",
    "retries": 2,
    "track_opens": True,
    "level": 3,
    "priority": "high-priority",
    "sendAt": "2026-11-29T10:00:00Z",
    "send_on": "2026-11-30",
    "campaign_id": "6f1c0f4e-7a8b-4c39-9a3e-2f1f6d3b8c11",
    "link": "https://example.com/x",
    "score": 0.5,
    "tags": ["welcome", "new"],
    "headers": {"X-Mailer": "ck"},
    "attachments": {"a": {"filename": "a.pdf", "size": 10}},
    "route": {"type": "api", "endpoint": "https://mail.example.com/send"},
    "reference": 42,
    "tracking": {"pixel": False, "domain": "t.example.com"},
}


def test_full_message_is_the_json_clients_dict(gen: Generated) -> None:
    message = good_email(gen)
    assert to_json(message, gen.service.TABLE, "EmailPayload") == GOOD_EMAIL_JSON
    model = validate(message, gen.email, gen.service.TABLE, "EmailPayload")
    assert model == gen.email.model_validate(GOOD_EMAIL_JSON)


def test_zero_values_unset_fields_and_empty_collections(gen: Generated) -> None:
    p = gen.pb.EmailPayload
    message = p(recipients=[p.Recipient(email="ann@example.com")], level=p.LEVEL_1)
    assert to_json(message, gen.service.TABLE, "EmailPayload") == {
        "recipients": [{"email": "ann@example.com"}],
        "subject": "",  # required scalars are present even at their zero value
        "body": "",
        "kind": "email",  # a required const is filled in
        "reply_to": None,  # required and nullable, not set: null
        "retries": 0,
        "track_opens": False,
        "level": 1,
    }
    push = gen.pb.PushAlertsPayload(target=gen.pb.PushAlertsPayload.Recipient())
    assert to_json(push, gen.service.TABLE, "PushAlertsPayload") == {
        "target": {"device_token": ""},
        "title": "",
        "data": {},  # a required map is present when empty; the optional array is not
    }
    push = gen.pb.PushAlertsPayload(badge=0, sounds=[1, 2], data={"b": 2, "a": 1})
    assert to_json(push, gen.service.TABLE, "PushAlertsPayload") == {
        "title": "",
        "badge": 0,  # optional and set to zero: present
        "data": {"a": 1, "b": 2},
        "sounds": ["ding", "dong"],
    }


def test_route_branch_is_unwrapped_with_its_discriminator(gen: Generated) -> None:
    p = gen.pb.EmailPayload
    message = good_email(gen, route=p.Route(smtp=p.SmtpRoute(host="smtp.example.com", port=0)))
    data = to_json(message, gen.service.TABLE, "EmailPayload")
    assert data["route"] == {"type": "smtp", "host": "smtp.example.com", "port": 0}
    model = validate(message, gen.email, gen.service.TABLE, "EmailPayload")
    assert model.model_dump(mode="json")["route"]["type"] == "smtp"


def problems(gen: Generated, message: Any, model: type[BaseModel], name: str) -> list[str]:
    with pytest.raises(PayloadInvalid) as caught:
        validate(message, model, gen.service.TABLE, name)
    return list(caught.value.problems)


def test_bad_values_are_rejected_with_proto_paths(gen: Generated) -> None:
    p = gen.pb.EmailPayload
    message = good_email(
        gen,
        subject="",
        recipients=[p.Recipient(email="ann@example.com"), p.Recipient(email="not-an-address")],
        level=99,  # unknown to the enum
        route=p.Route(smtp=p.SmtpRoute(host="")),
        reference=p.Reference(string_value="ab"),
        send_at="yesterday",
    )
    found = problems(gen, message, gen.email, "EmailPayload")
    assert found[0] == "payload.recipients[1].email: value is not a valid email address: " + (
        "An email address must have an @-sign."
    )
    assert found[1:] == [
        "payload.subject: String should have at least 1 character",
        "payload.level: Input should be 1, 2 or 3",
        "payload.send_at: Input should be a valid datetime or date, input is too short",
        "payload.route.smtp.host: String should have at least 1 character",
        "payload.reference.string_value: String should have at least 3 characters",
    ]


def test_unset_required_values_are_missing_not_zero(gen: Generated) -> None:
    p = gen.pb.EmailPayload
    message = good_email(gen, level=p.LEVEL_UNSPECIFIED, tracking=p.Tracking())
    message.ClearField("recipients")
    assert problems(gen, message, gen.email, "EmailPayload") == [
        "payload.recipients: List should have at least 1 item after validation, not 0",
        "payload.level: Field required",
    ]
    push = gen.pb.PushAlertsPayload(title="hi")
    assert problems(gen, push, gen.push, "PushAlertsPayload") == ["payload.target: Field required"]
    push = gen.pb.PushAlertsPayload(
        title="hi", target=gen.pb.PushAlertsPayload.Recipient(), sounds=[0]
    )
    assert problems(gen, push, gen.push, "PushAlertsPayload") == [
        "payload.target.device_token: String should have at least 8 characters",
        "payload.sounds[0]: Input should be 'ding' or 'dong'",
    ]


def test_batch_is_all_or_nothing(gen: Generated) -> None:
    table = gen.service.TABLE
    good = good_email(gen)
    models = validate_batch([good, good], gen.email, table, "EmailPayload")
    assert len(models) == 2
    bad = good_email(gen, subject="")
    with pytest.raises(PayloadInvalid) as caught:
        validate_batch([good, good, good, bad], gen.email, table, "EmailPayload")
    assert caught.value.problems == (
        "payloads[3].subject: String should have at least 1 character",
    )
    with pytest.raises(PayloadInvalid, match="a batch holds 1 to 2 payloads; got 3"):
        validate_batch([good] * 3, gen.email, table, "EmailPayload", max_size=2)


def test_long_problem_lists_are_cut(gen: Generated) -> None:
    bad = good_email(gen, subject="")
    with pytest.raises(PayloadInvalid) as caught:
        validate_batch([bad] * 50, gen.email, gen.service.TABLE, "EmailPayload")
    assert len(caught.value.problems) == 50
    assert str(caught.value).endswith("; and 30 more")


# --- a real grpc.aio server ---------------------------------------------------------


@dataclass
class FakeEnqueuer:
    calls: list[tuple[str, Any, dict[str, Any]]] = field(default_factory=list)

    async def enqueue(
        self,
        channel: str,
        payload: BaseModel,
        *,
        job_id: str | None = None,
        delay_ms: int | None = None,
        priority: int | None = None,
        timeout_ms: int | None = None,
    ) -> str:
        self.calls.append((channel, payload, {"job_id": job_id, "delay_ms": delay_ms}))
        return job_id or f"job-{len(self.calls)}"

    async def enqueue_many(
        self,
        channel: str,
        payloads: Sequence[BaseModel | JobRequest],
        *,
        priority: int | None = None,
    ) -> list[str]:
        self.calls.append((channel, list(payloads), {}))
        return [f"job-{i}" for i, _ in enumerate(payloads)]


@dataclass
class Served:
    stub: Any
    enqueuer: FakeEnqueuer


@pytest.fixture
async def served(gen: Generated) -> AsyncIterator[Served]:
    enqueuer = FakeEnqueuer()
    server = grpc.aio.server()
    gen.service.add_to_server(server, enqueuer)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(gen.grpc.ChannelsServiceStub(channel), enqueuer)
    finally:
        await server.stop(None)


async def test_valid_request_is_enqueued(gen: Generated, served: Served) -> None:
    request = gen.pb.EnqueueEmailRequest(payload=good_email(gen), job_id="abc", delay_ms=1500)
    reply = await served.stub.EnqueueEmail(request)
    assert reply.job_id == "abc"
    [(channel, model, options)] = served.enqueuer.calls
    assert (channel, options) == ("email", {"job_id": "abc", "delay_ms": 1500})
    assert isinstance(model, gen.email)
    assert model == gen.email.model_validate(GOOD_EMAIL_JSON)

    push = gen.pb.PushAlertsPayload(
        title="t", target=gen.pb.PushAlertsPayload.Recipient(device_token="x" * 8)
    )
    reply = await served.stub.EnqueuePushAlerts(gen.pb.EnqueuePushAlertsRequest(payload=push))
    assert reply.job_id == "job-2"
    assert served.enqueuer.calls[1][2] == {"job_id": None, "delay_ms": None}


async def test_invalid_request_is_rejected_and_not_enqueued(gen: Generated, served: Served) -> None:
    p = gen.pb.EmailPayload
    payload = good_email(gen, recipients=[p.Recipient(email="nope")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.EnqueueEmail(gen.pb.EnqueueEmailRequest(payload=payload))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "payload.recipients[0].email: value is not a valid email address: "
        "An email address must have an @-sign."
    )
    assert served.enqueuer.calls == []


async def test_batch_over_grpc_is_all_or_nothing(gen: Generated, served: Served) -> None:
    good, bad = good_email(gen), good_email(gen, subject="")
    request = gen.pb.EnqueueEmailBatchRequest(payloads=[good, good, good, bad])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.EnqueueEmailBatch(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "payloads[3].subject: String should have at least 1 character"
    assert served.enqueuer.calls == []

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.EnqueueEmailBatch(gen.pb.EnqueueEmailBatchRequest())
    assert caught.value.details() == "payloads: a batch holds 1 to 10 payloads; got 0"

    reply = await served.stub.EnqueueEmailBatch(
        gen.pb.EnqueueEmailBatchRequest(payloads=[good, good])
    )
    assert list(reply.job_ids) == ["job-0", "job-1"]
    [(channel, models, _)] = served.enqueuer.calls
    assert channel == "email"
    assert [type(m) for m in models] == [gen.email, gen.email]
