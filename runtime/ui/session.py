"""Who may use the dashboard, and the CSRF token of every form.

With API keys set, a person logs in once with a key: it is kept in an HttpOnly,
SameSite=Strict cookie scoped to /ui, never readable by page scripts nor sent by another
site's page. A request may instead carry `Authorization: Bearer <key>` (scripts, curl).

Every POST carries a CSRF token: an HMAC of the browser's random session nonce (its own
HttpOnly, SameSite=Strict cookie, new at each login) under a secret derived from the API
keys. Stateless, so any `runtime serve` process behind a load balancer checks a token
another one issued; a page of another site can neither read the nonce nor compute the
token, and a token is worth nothing with another browser's nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.auth import ApiKeys

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "KEY_COOKIE", "NONCE_COOKIE", "Gate", "Session"]

KEY_COOKIE = "channelkit_ui_key"
NONCE_COOKIE = "channelkit_ui_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_KEY_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's standing: its nonce (new: the response must set the cookie), whether
    it is authenticated and how (a cookie or the Authorization header)."""

    nonce: str
    new_nonce: bool
    authenticated: bool
    by_header: bool
    csrf_token: str


class Gate:
    def __init__(self, api_keys: Sequence[str]) -> None:
        self.required = bool(api_keys)
        self._keys = ApiKeys(api_keys)
        material = b"\0".join(sorted(key.encode() for key in api_keys))
        self._secret = hashlib.sha256(b"channelkit-ui-csrf\0" + material).digest()

    def key_allowed(self, key: str | None) -> bool:
        if not key or len(key) > MAX_KEY_LENGTH:
            return False
        return self._keys.allows(f"Bearer {key}")

    def session(
        self, cookies: dict[str, str], authorization: str | None, *, new_nonce: bool = False
    ) -> Session:
        nonce = cookies.get(NONCE_COOKIE, "")
        fresh = new_nonce or not _well_formed(nonce)
        if fresh:
            nonce = secrets.token_hex(32)
        by_header = self.required and self._keys.allows(authorization)
        authenticated = not self.required or by_header or self.key_allowed(cookies.get(KEY_COOKIE))
        return Session(nonce, fresh, authenticated, by_header, self.token(nonce))

    def token(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, supplied: str | None) -> bool:
        """A POST is allowed with the token of this browser's nonce, or when it is
        authenticated by the Authorization header (which no other site's page can send)."""
        if session.by_header:
            return True
        if session.new_nonce or not supplied:
            return False
        return hmac.compare_digest(self.token(session.nonce), supplied)


def _well_formed(nonce: str) -> bool:
    return len(nonce) == 64 and all(c in "0123456789abcdef" for c in nonce)
