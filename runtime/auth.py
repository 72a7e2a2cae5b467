"""API keys: whether an `Authorization` value ("Bearer <key>") carries a configured key.

Transport-free: the HTTP guard (runtime.http.app) and the gRPC interceptor
(runtime.grpc.server) each read the value their own way, ask `ApiKeys.allows`, and refuse
with their own status and message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["ApiKeys"]


def _digest(secret: bytes) -> bytes:
    # Fixed-length digests: compare_digest returns early when lengths differ, which would
    # tell a caller how long the keys are.
    return hashlib.sha256(secret).digest()


class ApiKeys:
    """The configured API keys.

    The check takes the same time whichever key matches, or none: the supplied token is
    compared with every key (no stop at the first match), as sha256 digests of one length.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key.encode()) for key in keys)

    def allows(self, authorization: str | bytes | None) -> bool:
        """True when `authorization` is `Bearer <key>` (scheme in any case) with a known key."""
        if authorization is None:
            return False
        raw = authorization.encode() if isinstance(authorization, str) else authorization
        scheme, _sep, token = raw.partition(b" ")
        supplied = _digest(token.strip())
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(supplied, known)
        return scheme.lower() == b"bearer" and matched
