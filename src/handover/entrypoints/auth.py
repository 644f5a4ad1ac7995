"""Bearer-token authentication of the HTTP API (``auth.mode``): RS256 JWTs verified against
``auth.public_key`` (a PEM text or the path of a PEM file), or nothing at all for local use (``none``).

The token's user is its ``sub``; a Sunbird (Keycloak) subject ``f:<provider>:<userId>`` names the user after
its last ``:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jwt

from handover.config import ConfigError, Settings

ALGORITHMS = ["RS256"]
LEEWAY_SECONDS = 10


class AuthError(Exception):
    """401 (no or bad token) or 403 (a good token of another user)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def load_public_key(value: str) -> str:
    """The PEM text itself, or the contents of the file it names."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text
    path = Path(text).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"auth.public_key: not a PEM key and not a readable file: {text[:80]!r} ({exc})") from None


def user_of_subject(subject: str) -> str:
    """``f:5a8a3f2b-...:874ed8a5-...`` -> ``874ed8a5-...``; a plain id stays as it is."""
    return subject.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class JwtAuth:
    public_key: object  # the loaded key (PyJWT accepts the PEM text too)

    @classmethod
    def from_pem(cls, pem: str) -> JwtAuth:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(pem.encode("utf-8"))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"auth.public_key: not a valid PEM public key ({exc})") from None
        return cls(key)

    def user(self, authorization: str | None) -> str:
        """The user of the bearer token in an ``Authorization`` header; ``AuthError(401)`` otherwise."""
        if not authorization:
            raise AuthError(401, "a bearer token is required")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "the Authorization header must be 'Bearer <token>'")
        try:
            claims = jwt.decode(
                token,
                self.public_key,  # type: ignore[arg-type]
                algorithms=ALGORITHMS,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "the token has expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError(401, "the token signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"the token is not valid: {exc}") from None
        subject = claims.get("sub")
        user = user_of_subject(subject) if isinstance(subject, str) else ""
        if not user.strip():
            raise AuthError(401, "the token names no user")
        return user


def authenticator(settings: Settings) -> JwtAuth | None:
    """``JwtAuth`` for ``auth.mode = jwt`` (a ``ConfigError`` without a usable key), None for ``none``."""
    if settings["auth.mode"] == "none":
        return None
    value = settings["auth.public_key"]
    if not value:
        raise ConfigError(
            "auth.mode is jwt but auth.public_key is not set (HANDOVER_AUTH_PUBLIC_KEY: a PEM key or its path); "
            "set HANDOVER_AUTH_MODE=none for local use without authentication"
        )
    return JwtAuth.from_pem(load_public_key(value))
