"""Authentication of the HTTP API with a key pair made here: a good token of actionBy, none, expired, signed
with another key, of another user; Sunbird-style subjects; the status endpoint; start-up without a key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from handover.config import ConfigError
from handover.entrypoints.api import create_app
from tests.e2e.api_support import BODY, TRANSFER, assert_error, client, wired

UNAUTHORIZED = ("UOS_UOWNTRANS0070", "You are not authorized.", "UNAUTHORIZED")
FORBIDDEN_MSG = "The token's user is not the actionBy user of the request."


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


def token(key: rsa.RSAPrivateKey, sub: str = "u-admin", expires_in: float = 300, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + int(expires_in), **claims}, key, algorithm="RS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def http(key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'handover.db'}"
    app, parts = wired(url, {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": public_pem(key)})
    with client(create_app(app, parts)) as test_client:
        yield test_client


def test_good_token_of_action_by(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(key)))
    assert response.status_code == 200, response.text
    assert response.json()["responseCode"] == "OK"


def test_sunbird_subject_names_the_user_after_the_last_colon(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    sub = "f:5a8a3f2b-3409-42e0-9001-f913bc0fde31:u-admin"
    assert http.post(TRANSFER, json=BODY, headers=bearer(token(key, sub))).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic dTpw"}],
    ids=["none", "empty", "no-token", "basic"],
)
def test_no_token_is_401(http: TestClient, headers: dict[str, str]) -> None:
    response = http.post(TRANSFER, json=BODY, headers=headers)
    assert_error(response, 401, *UNAUTHORIZED)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(key, expires_in=-3600)))
    assert_error(response, 401, *UNAUTHORIZED)
    assert "expired" in response.headers["WWW-Authenticate"]


def test_token_signed_with_another_key_is_401(http: TestClient) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(new_key())))
    assert_error(response, 401, *UNAUTHORIZED)
    assert "signature" in response.headers["WWW-Authenticate"]


def unsigned_token(header: dict[str, str], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand (PyJWT refuses to make these): ``alg: none``, or HS256 keyed with the public key."""

    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(claims)}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_tokens_not_signed_with_rs256_are_401(http: TestClient, key: rsa.RSAPrivateKey, algorithm: str) -> None:
    claims = {"sub": "u-admin", "exp": int(time.time()) + 300}
    secret = public_pem(key).encode() if algorithm == "HS256" else None  # the classic key-confusion attack
    forged = unsigned_token({"alg": algorithm, "typ": "JWT"}, claims, secret)
    assert_error(http.post(TRANSFER, json=BODY, headers=bearer(forged)), 401, *UNAUTHORIZED)


def test_token_without_expiry_or_subject_is_401(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    no_exp = jwt.encode({"sub": "u-admin"}, key, algorithm="RS256")
    no_sub = jwt.encode({"exp": int(time.time()) + 300}, key, algorithm="RS256")
    for value in (no_exp, no_sub, "not.a.jwt"):
        assert_error(http.post(TRANSFER, json=BODY, headers=bearer(value)), 401, *UNAUTHORIZED)


def test_token_of_another_user_is_403(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(key, "u-ravi")))
    assert_error(response, 403, "UOS_UOWNTRANS0071", FORBIDDEN_MSG, "FORBIDDEN")
    # no actionBy at all cannot match the token either
    request = {k: v for k, v in BODY["request"].items() if k != "actionBy"}
    response = http.post(TRANSFER, json={"request": request}, headers=bearer(token(key)))
    assert_error(response, 403, "UOS_UOWNTRANS0071", FORBIDDEN_MSG, "FORBIDDEN")


def test_authentication_comes_before_reading_the_body(http: TestClient) -> None:
    assert_error(http.post(TRANSFER, content=b"{not json"), 401, *UNAUTHORIZED)


def test_status_needs_the_token_of_action_by(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    headers = {**bearer(token(key)), "X-Request-ID": "req-auth-status"}
    assert http.post(TRANSFER, json=BODY, headers=headers).status_code == 200
    path = f"{TRANSFER}/req-auth-status"
    assert_error(http.get(path), 401, *UNAUTHORIZED)
    assert_error(
        http.get(path, headers=bearer(token(key, "u-ravi"))),
        403,
        "UOS_UOWNTRANS0071",
        "The token's user is not the actionBy user of this request.",
        "FORBIDDEN",
    )
    response = http.get(path, headers=bearer(token(key)))
    assert response.status_code == 200
    assert [e["outcome"] for e in response.json()["result"]["events"]] == ["pending"]


def test_health_and_metrics_need_no_token(http: TestClient) -> None:
    assert http.get("/health").status_code == 200
    assert http.get("/metrics").status_code == 200


def test_public_key_from_a_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text(public_pem(key))
    app, parts = wired(
        f"sqlite:///{tmp_path / 'h.db'}", {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": str(pem)}
    )
    with client(create_app(app, parts)) as http:
        assert http.post(TRANSFER, json=BODY, headers=bearer(token(key))).status_code == 200
        assert http.post(TRANSFER, json=BODY).status_code == 401


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "auth.public_key is not set"),
        ("/no/such/key.pem", "not a readable file"),
        ("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", "not a valid PEM public key"),
    ],
)
def test_jwt_mode_without_a_usable_key_does_not_start(tmp_path: Path, value: str | None, message: str) -> None:
    env = {"HANDOVER_AUTH_MODE": "jwt"} | ({"HANDOVER_AUTH_PUBLIC_KEY": value} if value else {})
    app, parts = wired(f"sqlite:///{tmp_path / 'h.db'}", env)
    with pytest.raises(ConfigError, match=message):
        create_app(app, parts)
