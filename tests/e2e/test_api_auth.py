"""Authentication of the HTTP API over HTTP, with key pairs made here.

With one key (``auth.public_key``): a good token of actionBy, none, expired, signed with another key or not with
RS256, of another user; the status endpoint; start-up without a key. As a Sunbird deployment runs it
(``accesstoken.publickey.basepath`` with two keys in rotation, the issuer of ``sso.url``/``sso.realm``, an
audience and a longest lifetime): the user's token in ``x-authenticated-user-token`` next to a gateway key in
``Authorization``, keys by ``kid``, each refusal over every endpoint that takes a token, with the reason in the
answer. ``auth.protect_metrics_and_docs``. And ``handover serve`` started with these settings from the
environment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from handover.config import ConfigError
from handover.entrypoints.api import create_app
from tests.e2e.api_support import BODY, GATEWAY, TRANSFER, assert_error, client, loaded_store, serving, wired
from tests.tokens import (
    bearer,
    new_key,
    public_body,
    public_pem,
    token,
    unsigned_token,
    user_token,
    write_key,
)

__all__ = ["bearer", "new_key", "public_pem", "token"]  # the other API and console tests take them from here

ERR_UNAUTHORIZED = "UOS_UOWNTRANS0070"
FORBIDDEN_MSG = "The token's user is not the actionBy user of the request."
ISSUER = "https://sunbird.example/auth/realms/sunbird"


def assert_unauthorized(response: Any, reason: str) -> None:
    """A 401 envelope whose message gives ``reason`` (the WWW-Authenticate header too)."""
    assert_error(response, 401, ERR_UNAUTHORIZED, f"You are not authorized: {reason}.", "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def assert_refused(response: Any, reason_start: str) -> None:
    assert response.status_code == 401, response.text
    doc = response.json()
    assert (doc["params"]["err"], doc["responseCode"]) == (ERR_UNAUTHORIZED, "UNAUTHORIZED")
    assert doc["params"]["errmsg"].startswith(f"You are not authorized: {reason_start}"), doc["params"]["errmsg"]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


# --- one key (auth.public_key) ----------------------------------------------------------------------


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


def test_sunbird_subject_names_the_user_after_the_federation(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    sub = "f:5a8a3f2b-3409-42e0-9001-f913bc0fde31:u-admin"
    assert http.post(TRANSFER, json=BODY, headers=bearer(token(key, sub))).status_code == 200


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "a token is required: in the x-authenticated-user-token header or as 'Authorization: Bearer <token>'"),
        ({"Authorization": ""}, "a token is required"),
        ({"Authorization": "Bearer"}, "the Authorization header must be 'Bearer <token>'"),
        ({"Authorization": "Basic dTpw"}, "the Authorization header must be 'Bearer <token>'"),
        ({"x-authenticated-user-token": ""}, "the x-authenticated-user-token header is empty"),
    ],
    ids=["none", "empty", "no-token", "basic", "empty-user-token"],
)
def test_no_token_is_401(http: TestClient, headers: dict[str, str], reason: str) -> None:
    assert_refused(http.post(TRANSFER, json=BODY, headers=headers), reason)


def test_expired_token_is_401(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(key, expires_in=-3600)))
    assert_unauthorized(response, "the token has expired")
    assert "expired" in response.headers["WWW-Authenticate"]


def test_token_signed_with_another_key_is_401(http: TestClient) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(new_key())))
    assert_unauthorized(response, "the token signature is not valid")
    assert "signature" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_tokens_not_signed_with_rs256_are_401(http: TestClient, key: rsa.RSAPrivateKey, algorithm: str) -> None:
    claims = {"sub": "u-admin", "exp": int(time.time()) + 300}
    secret = public_pem(key).encode() if algorithm == "HS256" else None  # the classic key-confusion attack
    forged = unsigned_token({"alg": algorithm, "typ": "JWT"}, claims, secret)
    assert_refused(http.post(TRANSFER, json=BODY, headers=bearer(forged)), "the token is not signed with RS256")


def test_token_without_expiry_or_subject_is_401(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    no_exp = jwt.encode({"sub": "u-admin"}, key, algorithm="RS256")
    no_sub = jwt.encode({"exp": int(time.time()) + 300}, key, algorithm="RS256")
    assert_unauthorized(http.post(TRANSFER, json=BODY, headers=bearer(no_exp)), "the token has no expiry (exp)")
    assert_unauthorized(http.post(TRANSFER, json=BODY, headers=bearer(no_sub)), "the token has no subject (sub)")
    assert_refused(http.post(TRANSFER, json=BODY, headers=bearer("not.a.jwt")), "the token is not valid")


def test_token_of_another_user_is_403(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.post(TRANSFER, json=BODY, headers=bearer(token(key, "u-ravi")))
    assert_error(response, 403, "UOS_UOWNTRANS0071", FORBIDDEN_MSG, "FORBIDDEN")
    # no actionBy at all cannot match the token either
    request = {k: v for k, v in BODY["request"].items() if k != "actionBy"}
    response = http.post(TRANSFER, json={"request": request}, headers=bearer(token(key)))
    assert_error(response, 403, "UOS_UOWNTRANS0071", FORBIDDEN_MSG, "FORBIDDEN")


def test_authentication_comes_before_reading_the_body(http: TestClient) -> None:
    assert_refused(http.post(TRANSFER, content=b"{not json"), "a token is required")


def test_status_needs_the_token_of_action_by(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    headers = {**bearer(token(key)), "X-Request-ID": "req-auth-status"}
    assert http.post(TRANSFER, json=BODY, headers=headers).status_code == 200
    path = f"{TRANSFER}/req-auth-status"
    assert_refused(http.get(path), "a token is required")
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


def test_health_metrics_and_docs_need_no_token_by_default(http: TestClient) -> None:
    for path in ("/health", "/metrics", "/docs", "/redoc", "/openapi.json"):
        assert http.get(path).status_code == 200, path
    schemes = http.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["userToken"] == {
        "type": "apiKey", "in": "header", "name": "x-authenticated-user-token",
        "description": "the user's token as Sunbird clients send it (through the API gateway)",
    }
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert "/openapi.json" in http.get("/docs").text and "/openapi.json" in http.get("/redoc").text


@pytest.mark.parametrize("form", ["pem", "body"])
def test_public_key_from_a_file(tmp_path: Path, key: rsa.RSAPrivateKey, form: str) -> None:
    path = tmp_path / "key.pem"
    path.write_text(public_pem(key) if form == "pem" else public_body(key))
    app, parts = wired(
        f"sqlite:///{tmp_path / 'h.db'}", {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": str(path)}
    )
    with client(create_app(app, parts)) as http:
        assert http.post(TRANSFER, json=BODY, headers=bearer(token(key))).status_code == 200
        assert http.post(TRANSFER, json=BODY).status_code == 401


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "neither accesstoken.publickey.basepath .* nor auth.public_key is set"),
        ({"HANDOVER_AUTH_PUBLIC_KEY": "/no/such/key.pem"}, "not a readable file"),
        ({"HANDOVER_AUTH_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"},
         "not a valid PEM public key"),
        ({"HANDOVER_ACCESSTOKEN_PUBLICKEY_BASEPATH": "/no/such/dir"}, "is not a directory"),
        ({"HANDOVER_AUTH_PUBLIC_KEY": "-", "HANDOVER_SSO_URL": "https://sso/auth/"}, "sso.realm is not set"),
    ],
)
def test_jwt_mode_without_a_usable_key_does_not_start(tmp_path: Path, env: dict[str, str], message: str) -> None:
    app, parts = wired(f"sqlite:///{tmp_path / 'h.db'}", {"HANDOVER_AUTH_MODE": "jwt", **env})
    with pytest.raises(ConfigError, match=message):
        create_app(app, parts)


def test_protecting_metrics_and_docs_needs_authentication(tmp_path: Path) -> None:
    app, parts = wired(f"sqlite:///{tmp_path / 'h.db'}", {"HANDOVER_AUTH_PROTECT_METRICS_AND_DOCS": "true"})
    with pytest.raises(ConfigError, match=r"auth\.protect_metrics_and_docs needs auth\.mode = jwt"):
        create_app(app, parts)


# --- as a Sunbird deployment runs it ----------------------------------------------------------------


class Sunbird:
    """The app with two keys in rotation (``kid-old``, ``kid-new``), issuer, audience and a 1 h lifetime."""

    def __init__(self, http: TestClient, old: rsa.RSAPrivateKey, new: rsa.RSAPrivateKey) -> None:
        self.http, self.old, self.new = http, old, new

    def token(self, sub: str = "u-admin", *, key: rsa.RSAPrivateKey | None = None, kid: str = "kid-new",
              **claims: Any) -> str:
        claims = {"iss": ISSUER, "aud": ["account", "handover"], **claims}
        return token(key or self.new, sub, kid=kid, **{k: v for k, v in claims.items() if v is not None})


SUNBIRD_ENV = {
    "HANDOVER_AUTH_MODE": "jwt",
    "HANDOVER_SSO_URL": "https://sunbird.example/auth/",
    "HANDOVER_SSO_REALM": "sunbird",
    "HANDOVER_AUTH_AUDIENCE": "handover",
    "HANDOVER_AUTH_MAX_TOKEN_LIFETIME_SECONDS": "3600",
}


@pytest.fixture(scope="module")
def sunbird(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sunbird]:
    base = tmp_path_factory.mktemp("sunbird")
    old, new = new_key(), new_key()
    write_key(base / "keys", "kid-old", old)
    write_key(base / "keys", "kid-new", new, pem=True)
    env = {**SUNBIRD_ENV, "HANDOVER_ACCESSTOKEN_PUBLICKEY_BASEPATH": str(base / "keys")}
    app, parts = wired(f"sqlite:///{base / 'handover.db'}", env)
    with client(create_app(app, parts)) as http:
        yield Sunbird(http, old, new)


GATEWAY_KEY = bearer(jwt.encode({"iss": "api-admin"}, "a Kong consumer's secret, 32 bytes or more", algorithm="HS256"))


def test_the_user_token_behind_the_gateway(sunbird: Sunbird) -> None:
    headers = {**GATEWAY_KEY, **user_token(sunbird.token())}
    response = sunbird.http.post(GATEWAY, json=BODY, headers=headers)
    assert response.status_code == 200, response.text
    # and the other key of the rotation, on the other path
    headers = {**GATEWAY_KEY, **user_token(sunbird.token(key=sunbird.old, kid="kid-old"))}
    assert sunbird.http.post(TRANSFER, json=BODY, headers=headers).status_code == 200
    # without the gateway: the same token as a bearer token
    assert sunbird.http.post(TRANSFER, json=BODY, headers=bearer(sunbird.token())).status_code == 200


def test_authorization_is_not_the_user_token_when_the_user_token_header_is_sent(sunbird: Sunbird) -> None:
    good = bearer(sunbird.token())
    expired = user_token(sunbird.token(exp=int(time.time()) - 60))
    assert_unauthorized(sunbird.http.post(TRANSFER, json=BODY, headers={**good, **expired}), "the token has expired")
    empty = {**good, "x-authenticated-user-token": ""}
    assert_unauthorized(sunbird.http.post(TRANSFER, json=BODY, headers=empty),
                        "the x-authenticated-user-token header is empty")
    # the user token decides who is asking, whatever Authorization holds
    other = {**bearer(sunbird.token()), **user_token(sunbird.token("u-ravi"))}
    assert sunbird.http.post(TRANSFER, json=BODY, headers=other).status_code == 403
    # the gateway key alone is no user token
    assert_refused(sunbird.http.post(TRANSFER, json=BODY, headers=GATEWAY_KEY), "the token is not signed with RS256")


REFUSED = {
    "unknown-kid": (dict(kid="kid-retired"),
                    "the token's key id (kid) 'kid-retired' is not one of the configured keys"),
    "kid-of-other-key": (dict(kid="kid-old"), "the token signature is not valid"),
    "no-kid": (dict(kid=None), "the token names no key id (kid), and there is no single key (auth.public_key)"),
    "other-issuer": (dict(iss="https://sunbird.example/auth/realms/other"),
                     "the token's issuer (iss) 'https://sunbird.example/auth/realms/other' is not the one this "
                     "service accepts"),
    "no-issuer": (dict(iss=None), "the token names no issuer (iss)"),
    "other-audience": (dict(aud="portal"),
                       "the token's audience (aud) is not one this service accepts (auth.audience)"),
    "no-audience": (dict(aud=None), "the token has no audience (aud)"),
    "too-long": (dict(lifetime=7200),
                 "the token's lifetime (exp - iat = 7200 s) is longer than the 3600 s allowed "
                 "(auth.max_token_lifetime.seconds)"),
    "no-iat": (dict(iat=None), "the token has no issue time (iat), and a longest token lifetime is set "
                               "(auth.max_token_lifetime.seconds)"),
    "loose-subject": (dict(sub="anything:u-admin"),
                      "the token's subject (sub) 'anything:u-admin' is not a user id: "
                      "expected 'f:<federation id>:<user id>' or a user id without ':'"),
    "empty-federation": (dict(sub="f::u-admin"), "the token's subject (sub) 'f::u-admin' is not a user id"),
    "four-parts": (dict(sub="f:a:b:u-admin"), "the token's subject (sub) 'f:a:b:u-admin' is not a user id"),
}


def _refused_token(sunbird: Sunbird, case: str) -> str:
    """A token of the new key, issuer and audience right, one thing changed as ``REFUSED[case]`` says."""
    changes = dict(REFUSED[case][0])
    sub, kid, lifetime = changes.pop("sub", "u-admin"), changes.pop("kid", "kid-new"), changes.pop("lifetime", 300)
    claims = {k: v for k, v in {"iss": ISSUER, "aud": "handover", **changes}.items() if v is not None}
    if "iat" in changes:  # without iat
        return token(sunbird.new, sub, lifetime, kid=kid, iat=None, **claims)
    return token(sunbird.new, sub, lifetime, kid=kid, **claims)


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_tokens_say_why(sunbird: Sunbird, case: str) -> None:
    headers = {**GATEWAY_KEY, **user_token(_refused_token(sunbird, case))}
    assert_refused(sunbird.http.post(TRANSFER, json=BODY, headers=headers), REFUSED[case][1])


ENDPOINTS = [
    ("POST", TRANSFER, BODY),
    ("POST", f"{GATEWAY}/preview", BODY),
    ("GET", f"{TRANSFER}/req-any", None),
    ("GET", f"{GATEWAY}/req-any", None),
    ("POST", f"{TRANSFER}/req-any/undo", None),
    ("GET", f"{TRANSFER}/req-any/changes?mid=m", None),
]


@pytest.mark.parametrize(("method", "path", "doc"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
@pytest.mark.parametrize("case", ["loose-subject", "unknown-kid", "other-issuer", "too-long"])
def test_every_endpoint_refuses_the_same_tokens(sunbird: Sunbird, method: str, path: str, doc: Any,
                                                 case: str) -> None:
    headers = {**GATEWAY_KEY, **user_token(_refused_token(sunbird, case))}
    assert_refused(sunbird.http.request(method, path, json=doc, headers=headers), REFUSED[case][1])
    assert_refused(sunbird.http.request(method, path, json=doc, headers=bearer(_refused_token(sunbird, case))),
                   REFUSED[case][1])


def test_hostile_header_values_get_a_401_not_a_server_error(sunbird: Sunbird) -> None:
    odd = token(sunbird.new, kid="ключ-\"quoted\"\\", iss=ISSUER, aud="handover")
    response = sunbird.http.post(TRANSFER, json=BODY, headers=user_token(odd))
    assert_refused(response, "the token's key id (kid) 'ключ-\"quoted\"\\\\'")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.isascii() and challenge.count('"') == 4  # the kid's quotes and backslash do not break it
    for value in ("a" * 20_000, "x.y.z", "...", "Bearer " + sunbird.token()):
        assert sunbird.http.post(TRANSFER, json=BODY, headers=user_token(value)).status_code == 401


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory, key: rsa.RSAPrivateKey) -> Iterator[TestClient]:
    base = tmp_path_factory.mktemp("protected")
    env = {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": public_pem(key),
           "HANDOVER_AUTH_PROTECT_METRICS_AND_DOCS": "true"}
    app, parts = wired(f"sqlite:///{base / 'handover.db'}", env)
    with client(create_app(app, parts)) as http:
        yield http


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
def test_metrics_and_docs_need_a_token_when_protected(protected: TestClient, key: rsa.RSAPrivateKey,
                                                      path: str) -> None:
    assert_refused(protected.get(path), "a token is required")
    assert_unauthorized(protected.get(path, headers=bearer(token(key, expires_in=-60))), "the token has expired")
    assert_refused(protected.get(path, headers=bearer(token(key, "anything:u-admin"))), "the token's subject (sub)")
    for headers in (bearer(token(key, "u-ravi")), {**GATEWAY_KEY, **user_token(token(key, "u-ravi"))}):
        response = protected.get(path, headers=headers)  # any user with a good token
        assert response.status_code == 200, response.text
    assert protected.get("/health").status_code == 200  # liveness stays open


def test_serve_takes_the_sunbird_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.delenv("HANDOVER_KAFKA_BROKER_SERVERS", raising=False)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    loaded_store(url)
    old, new = new_key(), new_key()
    write_key(tmp_path / "keys" / "..2026_11_29", "kid-old", old)  # a Kubernetes-style volume, one level down
    write_key(tmp_path / "keys", "kid-new", new, pem=True)
    env = {**SUNBIRD_ENV, "HANDOVER_STORE": url, "HANDOVER_ACCESSTOKEN_PUBLICKEY_BASEPATH": str(tmp_path / "keys"),
           "HANDOVER_AUTH_PROTECT_METRICS_AND_DOCS": "true"}
    with serving(env, tmp_path / "serve.log") as server:
        for key, kid in ((new, "kid-new"), (old, "kid-old")):
            user = token(key, "f:fed-1:u-admin", kid=kid, iss=ISSUER, aud="handover")
            response = httpx.post(f"{server.base}{GATEWAY}", json=BODY, headers={**GATEWAY_KEY, **user_token(user)},
                                  timeout=10)
            assert response.status_code == 200, response.text
        loose = token(new, "anything:u-admin", kid="kid-new", iss=ISSUER, aud="handover")
        response = httpx.post(f"{server.base}{TRANSFER}", json=BODY, headers=user_token(loose), timeout=10)
        assert_refused(response, "the token's subject (sub) 'anything:u-admin' is not a user id")
        assert_refused(httpx.get(f"{server.base}/metrics", timeout=5), "a token is required")
        reader = token(new, "u-ravi", kid="kid-new", iss=ISSUER, aud="handover")
        assert httpx.get(f"{server.base}/metrics", headers=bearer(reader), timeout=5).status_code == 200
    assert "WARNING: authentication is OFF" not in server.output()
