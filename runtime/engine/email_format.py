"""`format: email` at the cost of one regular expression, with email-validator's verdicts.

Pydantic's `EmailStr` hands every address to email-validator, whose checks walk the
address one character at a time in Python: 25-70 µs an address on this project's
machines, most of a worker's decode of a payload with one address in it (py-spy: the
domain's per-character set comprehensions and UTS-46 character checks are 60 % of it,
splitting the address at the `@` another 12 %).

Nearly every address a service sends is plain ASCII in dot-atom form
(`ada.lovelace@example.com`). For those, what email-validator decides and the normalised
address it returns follow from a few checks on the whole string, made here from
email-validator's own constants: the local part is kept (lower-cased when it is one of
RFC 2142's case-insensitive mailbox names), the domain is lower-cased, and the domain must
not be special-use. Every other address (Unicode, quoted, a display name, spaces, Punycode,
anything the fast checks do not accept) goes to pydantic's `validate_email`, exactly as
`EmailStr` does, so the accepted value and the error are the same on every path.
tests/runtime/test_payload_formats.py holds that equivalence on a table of addresses and on
generated ones.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import email_validator
from email_validator.rfc_constants import (
    ATEXT,
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DNS_LABEL_LENGTH_LIMIT,
    DOMAIN_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    HOSTNAME_LABEL,
)
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic.networks import validate_email
from pydantic_core import core_schema

__all__ = ["Email", "normalized_email"]

# A dot-atom local part, one `@`, and a domain of at least two hostname labels whose last
# character is a letter (email-validator's "globally deliverable" rule). No character
# outside ATEXT, hostname characters and dots can match: no space, quote, `<`, `\`, CR/LF.
_PLAIN_ADDRESS = re.compile(
    f"([{ATEXT}]+(?:\\.[{ATEXT}]+)*)@({HOSTNAME_LABEL}(?:\\.{HOSTNAME_LABEL})+)", re.ASCII
)
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# ".test" etc.: a domain is special-use when "." + domain ends with one of these.
_SPECIAL_USE_SUFFIXES = tuple("." + name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _fast(value: str) -> str | None:
    """The normalised address when the fast checks settle it as valid, else None."""
    if len(value) > EMAIL_MAX_LENGTH or not value.isascii():
        return None
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match is None:
        return None
    local, domain = match.groups()
    domain = domain.lower()
    if (
        len(domain) > DOMAIN_MAX_LENGTH
        or "--" in domain  # R-LDH labels and Punycode: email-validator's own checks
        or not domain[-1].isalpha()
        or ("." + domain).endswith(_SPECIAL_USE_SUFFIXES)
        or max(map(len, domain.split("."))) > DNS_LABEL_LENGTH_LIMIT
    ):
        return None
    if local.lower() in _CASE_INSENSITIVE:
        local = local.lower()
    return f"{local}@{domain}"


def normalized_email(value: str) -> str:
    """The address as `EmailStr` would accept it, or the `PydanticCustomError` it raises."""
    fast = _fast(value)
    if fast is not None:
        return fast
    return validate_email(value)[1]


class _EmailFormat:
    """Pydantic metadata: after the string check, `normalized_email`; JSON Schema
    `{"type": "string", "format": "email"}` (the same core schema shape as EmailStr's)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(normalized_email, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        field_schema = handler(schema)
        field_schema.update(type="string", format="email")
        return field_schema


Email = Annotated[str, _EmailFormat()]
"""A string with JSON Schema `format: email`: what the generated models use in place of
pydantic's `EmailStr` (same verdicts, same normalised value, same errors)."""
