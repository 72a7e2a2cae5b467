"""runtime.auth: which `Authorization` values the configured API keys let in."""

from __future__ import annotations

import hmac

import pytest

from runtime.auth import ApiKeys


@pytest.mark.parametrize(
    "authorization",
    ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "Bearer  s3cret ", b"Bearer s3cret"],
)
def test_the_right_key_is_allowed(authorization: str | bytes) -> None:
    assert ApiKeys(["s3cret"]).allows(authorization)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong",
        "Bearer s3cre",  # a prefix of the key
        "Bearer s3cretX",  # the key and more
        "Bearer S3CRET",  # keys are case-sensitive
        b"Bearer \xff\xfe",  # not UTF-8: refused, not an error
    ],
)
def test_a_wrong_key_is_refused(authorization: str | bytes) -> None:
    assert not ApiKeys(["s3cret"]).allows(authorization)


@pytest.mark.parametrize(
    "authorization", ["Basic s3cret", "Token s3cret", "s3cret", "Bearers3cret", " Bearer s3cret"]
)
def test_the_key_under_another_scheme_is_refused(authorization: str) -> None:
    assert not ApiKeys(["s3cret"]).allows(authorization)


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", b""])
def test_a_missing_header_or_token_is_refused(authorization: str | bytes | None) -> None:
    assert not ApiKeys(["s3cret"]).allows(authorization)


def test_any_of_several_keys_is_allowed() -> None:
    keys = ApiKeys(["first-key", "second", "a-much-longer-third-key-0123456789"])
    assert keys.allows("Bearer first-key")
    assert keys.allows("Bearer second")
    assert keys.allows("Bearer a-much-longer-third-key-0123456789")
    assert not keys.allows("Bearer third")
    assert not keys.allows("Bearer first-key second")


def test_no_keys_allow_nothing() -> None:
    assert not ApiKeys([]).allows("Bearer ")
    assert not ApiKeys([]).allows("Bearer anything")


def test_every_key_is_compared_as_equal_length_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: a match on the first key still compares the others, and lengths are
    fixed (compare_digest would return early on a length mismatch)."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keys = ApiKeys(["k1", "a-longer-key", "k3"])
    assert keys.allows("Bearer k1")
    assert compared == [(32, 32)] * 3
    compared.clear()
    assert not keys.allows("Basic k1")
    assert compared == [(32, 32)] * 3
