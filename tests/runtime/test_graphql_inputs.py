"""runtime.graphql.inputs on the reference app's generated input types: an input object
becomes the JSON a client would have sent, and the model's errors come back with GraphQL
paths. (Over HTTP, against a served app: tests/runtime/test_graphql.py.)"""

from __future__ import annotations

import pytest
import strawberry
from strawberry.scalars import JSON

from generated.graphql_schema import (
    EmailContentInput,
    EmailPayloadInput,
    EmailRecipientInput,
    EmailTemplateContentInput,
    SmsPayloadInput,
    SmsPriority,
)
from generated.models.email import EmailPayload
from generated.models.sms import SmsPayload
from runtime.graphql.inputs import PayloadInvalid, Problem, to_json, validate, validate_batch


def test_left_out_is_absent_and_an_explicit_null_is_passed_on() -> None:
    assert to_json(SmsPayloadInput(to="+14155550100", body="hi")) == {
        "to": "+14155550100",
        "body": "hi",
    }
    sent = SmsPayloadInput(to="+14155550100", body="hi", sender_id=None, priority=SmsPriority.HIGH)
    assert to_json(sent) == {
        "to": "+14155550100",
        "body": "hi",
        "sender_id": None,
        "priority": "high",
    }


def test_an_explicit_null_is_judged_by_the_model_as_json_null_is() -> None:
    """The HTTP API refuses `"sender_id": null` (optional, but not null): so does this."""
    sent = SmsPayloadInput(to="+14155550100", body="hi", sender_id=None)
    with pytest.raises(PayloadInvalid) as raised:
        validate(sent, SmsPayload, prefix=("payload",))
    assert [p.path for p in raised.value.problems] == [("payload", "senderId")]


def test_a_one_of_is_its_branch_with_the_discriminator_filled_in() -> None:
    content = EmailContentInput(
        template=EmailTemplateContentInput(template_id="welcome", variables=JSON({"name": "Ada"}))
    )
    payload = EmailPayloadInput(
        to=[EmailRecipientInput(email="ada@example.com")], subject="Hi", content=content
    )
    model = validate(payload, EmailPayload, prefix=("payload",))
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True)["content"] == {
        "type": "template",
        "template_id": "welcome",
        "variables": {"name": "Ada"},
    }
    assert content.inline is strawberry.UNSET


def test_batch_problems_are_indexed_and_the_text_names_each_path() -> None:
    good = SmsPayloadInput(to="+14155550100", body="hi")
    bad = SmsPayloadInput(to="12", body="")
    with pytest.raises(PayloadInvalid) as raised:
        validate_batch([good, bad], SmsPayload, max_size=10)
    assert [p.path for p in raised.value.problems] == [
        ("payloads", 1, "to"),
        ("payloads", 1, "body"),
    ]
    assert str(raised.value).startswith("invalid payload: payloads[1].to: String should match")
    assert Problem(("payload", "to", 0, "email"), "x").field == "payload.to[0].email"
