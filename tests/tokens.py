"""Key pairs and tokens made here, for the authentication tests: RS256 tokens shaped as Keycloak's (``kid`` in
the header, ``iss``, ``aud``, ``iat``, ``exp``), key files as Sunbird's ``accesstoken.publickey.basepath``
holds them, and hand-built tokens that PyJWT refuses to make (``alg: none``, HS256 keyed with the public key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_OMIT = object()


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_body(key: rsa.RSAPrivateKey) -> str:
    """The key as a Sunbird key file holds it: the base64 body of the PEM, no armour, on one line."""
    return "".join(line for line in public_pem(key).splitlines() if not line.startswith("-----"))


def write_key(directory: Path, kid: str, key: rsa.RSAPrivateKey, *, pem: bool = False) -> Path:
    """A key file named by its kid (``pem``: with the armour and line breaks, else the one-line body)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / kid
    path.write_text(public_pem(key) if pem else public_body(key))
    return path


def token(
    key: rsa.RSAPrivateKey,
    sub: str = "u-admin",
    expires_in: float = 300,
    *,
    kid: str | None = None,
    iat: Any = _OMIT,
    **claims: Any,
) -> str:
    """An RS256 token of ``sub``, issued now (``iat=None``: without ``iat``) and valid ``expires_in`` seconds."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(expires_in), **claims}
    if iat is None:
        del body["iat"]
    elif iat is not _OMIT:
        body["iat"] = iat
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid} if kid is not None else None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def user_token(value: str) -> dict[str, str]:
    """The header Sunbird clients send the user's token in (through the API gateway)."""
    return {"x-authenticated-user-token": value}


def signed_token(key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An RS256 token with any header and claims (PyJWT refuses to encode a non-string ``kid`` or ``iss``)."""

    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'RS256', **header})}.{part(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand: ``alg: none`` (``secret`` None), or HS256 keyed with ``secret``."""

    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(claims)}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
