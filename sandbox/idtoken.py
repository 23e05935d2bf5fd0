"""Google-signed ID tokens: minted by the metadata server, checked by the fleet's front end.

An ID token is an RS256 JWT whose claims follow Google's ID tokens (iss https://accounts.google.com, aud,
azp, sub, email, email_verified, iat, exp; https://cloud.google.com/docs/authentication/token-types#id).
The signing key is generated when the world starts and lives only in memory, so no token outlives the
world and no key is ever written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://accounts.google.com"
ISSUERS = frozenset({ISSUER, "accounts.google.com"})
"""Google documents both spellings of its issuer for ID tokens; a verifier accepts either."""


@dataclass
class IdentityLimits:
    """Published figures of Google's tokens; the `identity` limit group."""

    id_token_lifetime_s: int = 3600
    """Google-signed ID tokens are valid for one hour (https://cloud.google.com/docs/authentication/token-types#id)."""
    access_token_lifetime_s: int = 3599
    """What the metadata server's token endpoint answers as `expires_in` for a fresh access token: just under
    the one-hour default lifetime of access tokens (same page)."""
    clock_skew_s: int = 0
    """Leeway the front end allows on iat/exp. Not published; none at all is the strict assumption."""


class InvalidToken(Exception):
    """A bearer token the front end cannot accept; the message says why, for tests and logs only."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unique_id(email: str) -> str:
    """A service account's 21-digit unique ID, what Google puts in `sub` and `azp`; stable per email."""
    return "1" + str(int(hashlib.sha256(email.encode()).hexdigest(), 16))[:20]


class IdTokenIssuer:
    """One signing key: mints tokens and verifies that a token is one of its own, unexpired, for an audience."""

    def __init__(self, limits: IdentityLimits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits or IdentityLimits()
        self._clock = clock
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(20)

    def mint(self, *, audience: str, email: str, issued_at: float | None = None) -> str:
        now = int(self._clock() if issued_at is None else issued_at)
        subject = unique_id(email)
        header = {"alg": "RS256", "kid": self.key_id, "typ": "JWT"}
        claims = {"aud": audience, "azp": subject, "email": email, "email_verified": True,
                  "exp": now + self.limits.id_token_lifetime_s, "iat": now, "iss": ISSUER, "sub": subject}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def verify(self, token: str) -> Mapping[str, Any]:
        """The claims of a token this issuer signed that has not expired; raises InvalidToken otherwise.

        The audience is the caller's to check: which audiences a receiver accepts is its own business.
        """
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a JWT")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except ValueError as exc:
            raise InvalidToken(f"not a JWT: {exc}") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
            raise InvalidToken("not an RS256 JWT")
        try:
            self._key.public_key().verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                                          hashes.SHA256())
        except InvalidSignature as exc:
            raise InvalidToken("signature does not verify with Google's keys") from exc
        if claims.get("iss") not in ISSUERS:
            raise InvalidToken(f"issuer {claims.get('iss')!r} is not Google")
        now, skew = self._clock(), self.limits.clock_skew_s
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, int) or not isinstance(issued, int):
            raise InvalidToken("iat and exp must be integers")
        if now >= expires + skew:
            raise InvalidToken(f"expired {now - expires:.0f} s ago")
        if issued > now + skew:
            raise InvalidToken("issued in the future")
        return claims
