"""The token verifier (``entrypoints.auth``) on its own: the key directory as userorg reads it, keys by ``kid``
and two at once, the issuer, audience and lifetime checks, the subject forms, where the token is read from, and
the settings that drive it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.datastructures import Headers

from handover.config import ConfigError, load_settings
from handover.entrypoints.auth import (
    AuthError,
    JwtAuth,
    authenticator,
    expected_issuer,
    load_key_directory,
    token_of,
    user_of_subject,
)
from tests.tokens import (
    bearer,
    new_key,
    public_body,
    public_pem,
    signed_token,
    token,
    unsigned_token,
    user_token,
    write_key,
)

ISSUER = "https://sunbird.example/auth/realms/sunbird"


@pytest.fixture(scope="module")
def old() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def new() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def keys(tmp_path: Path, old: rsa.RSAPrivateKey, new: rsa.RSAPrivateKey) -> Path:
    """A key directory in rotation: the old key as a one-line body, the new one as a PEM."""
    write_key(tmp_path / "keys", "kid-old", old)
    write_key(tmp_path / "keys", "kid-new", new, pem=True)
    return tmp_path / "keys"


def refusal(auth: JwtAuth, value: str) -> str:
    with pytest.raises(AuthError) as caught:
        auth.user_of_token(value)
    assert caught.value.status == 401
    return caught.value.detail


def settings(**values: str) -> Any:
    return load_settings(None, environ={"HANDOVER_" + k.upper(): v for k, v in values.items()})


# --- the key directory ------------------------------------------------------------------------------


def test_the_directory_gives_one_key_per_file_named_by_its_kid(keys: Path, old: Any, new: Any) -> None:
    loaded = load_key_directory(keys)
    assert sorted(loaded) == ["kid-new", "kid-old"]
    assert loaded["kid-old"].public_numbers() == old.public_key().public_numbers()
    assert loaded["kid-new"].public_numbers() == new.public_key().public_numbers()


def test_a_key_body_over_several_lines_and_sub_directories_are_read(tmp_path: Path, old: Any) -> None:
    body = public_body(old)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "kid-deep").write_text("\n".join(body[i:i + 64] for i in range(0, len(body), 64)) + "\n")
    assert list(load_key_directory(tmp_path)) == ["kid-deep"]


def test_a_kubernetes_secret_volume_is_read(tmp_path: Path, old: Any) -> None:
    # kubelet's layout: the files live in a timestamped directory, `..data` links to it, each key is a link
    real = tmp_path / "..2026_11_29_10_00_00.123"
    write_key(real, "kid-old", old)
    (tmp_path / "..data").symlink_to(real.name)
    (tmp_path / "kid-old").symlink_to(Path("..data") / "kid-old")
    assert list(load_key_directory(tmp_path)) == ["kid-old"]


def test_files_that_are_not_rsa_keys_are_skipped_with_a_warning(
    keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (keys / "README").write_text("keys of the sunbird realm\n")
    (keys / "kid-ec").write_text(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    (keys / "kid-binary").write_bytes(b"\xff\xfe\x00")
    with caplog.at_level(logging.WARNING):
        loaded = load_key_directory(keys)
    assert sorted(loaded) == ["kid-new", "kid-old"]
    for name in ("README", "kid-ec", "kid-binary"):
        assert f"{keys / name} skipped" in caplog.text
    assert f"{keys / 'kid-ec'} skipped (not an RSA public key: ECPublicKey)" in caplog.text
    assert f"{keys / 'README'} skipped (neither a PEM key nor a base64 key body)" in caplog.text


@pytest.mark.parametrize("content", [None, "", "not a key\n"], ids=["no-file", "empty-file", "junk"])
def test_a_directory_without_a_usable_key_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "kid").write_text(content)
    with pytest.raises(ConfigError, match="no RSA public key could be read"):
        load_key_directory(tmp_path)


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load_key_directory(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        load_key_directory(tmp_path / "file")


def test_one_kid_with_two_different_keys_is_a_config_error(tmp_path: Path, old: Any, new: Any) -> None:
    write_key(tmp_path / "a", "kid-1", old)
    write_key(tmp_path / "b", "kid-1", old, pem=True)  # the same key twice: fine
    assert list(load_key_directory(tmp_path)) == ["kid-1"]
    write_key(tmp_path / "c", "kid-1", new)
    with pytest.raises(ConfigError, match="key id 'kid-1' has two different keys"):
        load_key_directory(tmp_path)


# --- keys by kid ------------------------------------------------------------------------------------


def test_two_keys_at_once_each_verifies_the_tokens_of_its_kid(keys: Path, old: Any, new: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys))
    assert auth.user_of_token(token(old, kid="kid-old")) == "u-admin"
    assert auth.user_of_token(token(new, "u-ravi", kid="kid-new")) == "u-ravi"
    # signed with one key, naming the other: the signature does not hold
    assert refusal(auth, token(old, kid="kid-new")) == "the token signature is not valid"


def test_an_unknown_or_missing_kid_is_refused_without_a_single_key(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys))
    assert refusal(auth, token(old, kid="kid-gone")) == (
        "the token's key id (kid) 'kid-gone' is not one of the configured keys"
    )
    assert refusal(auth, token(old)) == (
        "the token names no key id (kid), and there is no single key (auth.public_key)"
    )
    long_kid = "k" * 500
    assert refusal(auth, token(old, kid=long_kid)).startswith(f"the token's key id (kid) '{'k' * 64}...'")


def test_a_kid_that_is_not_a_string_is_refused(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys))
    for kid in (7, ["kid-old"], {"a": 1}, None):
        value = signed_token(old, {"kid": kid}, {"sub": "u", "exp": int(time.time()) + 60})
        assert refusal(auth, value).startswith(("the token is not valid: Key ID", "the token's key id (kid)"))


def test_the_single_key_takes_tokens_without_a_kid_or_with_one_the_directory_lacks(
    keys: Path, old: Any, new: Any
) -> None:
    single = new_key()
    auth = JwtAuth(keys=load_key_directory(keys), default_key=single.public_key())  # type: ignore[arg-type]
    assert auth.user_of_token(token(single)) == "u-admin"
    assert auth.user_of_token(token(single, kid="kid-elsewhere")) == "u-admin"
    assert auth.user_of_token(token(old, kid="kid-old")) == "u-admin"  # the directory still wins for its kids
    assert refusal(auth, token(single, kid="kid-old")) == "the token signature is not valid"


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_tokens_not_signed_with_rs256_are_refused(keys: Path, algorithm: str) -> None:
    auth = JwtAuth(keys=load_key_directory(keys))
    secret = public_body(new_key()).encode() if algorithm == "HS256" else None
    forged = unsigned_token({"alg": algorithm, "kid": "kid-old"}, {"sub": "u", "exp": time.time() + 60}, secret)
    assert refusal(auth, forged).startswith("the token is not signed with RS256")


def test_malformed_expired_and_incomplete_tokens_say_why(keys: Path, old: Any) -> None:
    import jwt

    auth = JwtAuth(keys=load_key_directory(keys))
    assert refusal(auth, "not.a.jwt").startswith("the token is not valid")
    assert refusal(auth, "nonsense").startswith("the token is not valid")
    assert refusal(auth, token(old, kid="kid-old", expires_in=-60)) == "the token has expired"
    no_exp = jwt.encode({"sub": "u"}, old, algorithm="RS256", headers={"kid": "kid-old"})
    assert refusal(auth, no_exp) == "the token has no expiry (exp)"
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, old, algorithm="RS256", headers={"kid": "kid-old"})
    assert refusal(auth, no_sub) == "the token has no subject (sub)"
    future = token(old, kid="kid-old", iat=int(time.time()) + 3600, expires_in=7200)
    assert refusal(auth, future).startswith("the token is not valid yet")


# --- issuer, audience, lifetime ---------------------------------------------------------------------


def test_the_issuer_when_set_must_match_ignoring_case(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys), issuer=ISSUER)
    assert auth.user_of_token(token(old, kid="kid-old", iss=ISSUER)) == "u-admin"
    assert auth.user_of_token(token(old, kid="kid-old", iss=ISSUER.upper())) == "u-admin"  # as upstream
    assert refusal(auth, token(old, kid="kid-old", iss=ISSUER + "2")) == (
        f"the token's issuer (iss) '{ISSUER}2' is not the one this service accepts"
    )
    assert refusal(auth, token(old, kid="kid-old")) == "the token names no issuer (iss)"
    claims = {"sub": "u-admin", "exp": int(time.time()) + 60, "iss": 7}
    assert refusal(auth, signed_token(old, {"kid": "kid-old"}, claims)) == "the token names no issuer (iss)"
    # without an issuer setting any issuer goes
    assert JwtAuth(keys=load_key_directory(keys)).user_of_token(token(old, kid="kid-old", iss="x")) == "u-admin"


@pytest.mark.parametrize(
    ("values", "issuer"),
    [
        ({}, None),
        ({"sso_url": "https://sunbird.example/auth/", "sso_realm": "sunbird"}, ISSUER),
        ({"sso_url": "https://sunbird.example/auth", "sso_realm": "sunbird"}, ISSUER),  # the missing / added
        ({"auth_issuer": "https://idp.example"}, "https://idp.example"),
    ],
)
def test_the_issuer_is_built_as_sunbird_builds_it(values: dict[str, str], issuer: str | None) -> None:
    assert expected_issuer(settings(**values)) == issuer


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sso_url": "https://sunbird.example/auth/"}, "sso.realm is not set"),
        ({"sso_realm": "sunbird"}, "sso.url is not set"),
        ({"auth_issuer": "https://idp", "sso_realm": "sunbird"}, "set either auth.issuer or sso.url"),
    ],
)
def test_half_an_issuer_setting_is_a_config_error(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expected_issuer(settings(**values))


def test_the_audience_when_set_must_be_named_by_the_token(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys), audience=("handover", "account"))
    assert auth.user_of_token(token(old, kid="kid-old", aud="account")) == "u-admin"
    assert auth.user_of_token(token(old, kid="kid-old", aud=["portal", "handover"])) == "u-admin"
    wrong = "the token's audience (aud) is not one this service accepts (auth.audience)"
    assert refusal(auth, token(old, kid="kid-old", aud="portal")) == wrong
    assert refusal(auth, token(old, kid="kid-old", aud=["portal", "admin"])) == wrong
    assert refusal(auth, token(old, kid="kid-old")) == "the token has no audience (aud)"
    # without an audience setting the claim is not looked at
    assert JwtAuth(keys=load_key_directory(keys)).user_of_token(token(old, kid="kid-old", aud="x")) == "u-admin"


def test_the_longest_lifetime_when_set(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys), max_lifetime_seconds=3600)
    assert auth.user_of_token(token(old, kid="kid-old", expires_in=3600)) == "u-admin"
    assert refusal(auth, token(old, kid="kid-old", expires_in=3601)) == (
        "the token's lifetime (exp - iat = 3601 s) is longer than the 3600 s allowed (auth.max_token_lifetime.seconds)"
    )
    assert refusal(auth, token(old, kid="kid-old", iat=None)).startswith("the token has no issue time (iat)")
    # a token issued long ago that is still valid: its lifetime counts, not what is left of it
    long_ago = int(time.time()) - 86_400
    assert refusal(auth, token(old, kid="kid-old", iat=long_ago, expires_in=600)).startswith(
        "the token's lifetime (exp - iat = 87000 s)"
    )
    unlimited = JwtAuth(keys=load_key_directory(keys))
    assert unlimited.user_of_token(token(old, kid="kid-old", iat=None, expires_in=10 * 86_400)) == "u-admin"


# --- the subject ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "user"),
    [
        ("u-admin", "u-admin"),
        ("874ed8a5-782e-4f6c-8f36-e0288455901e", "874ed8a5-782e-4f6c-8f36-e0288455901e"),
        ("f:5a8a3f2b-3409-42e0-9001-f913bc0fde31:874ed8a5-782e-4f6c-8f36-e0288455901e",
         "874ed8a5-782e-4f6c-8f36-e0288455901e"),
        ("f:fed:u-admin", "u-admin"),
    ],
)
def test_the_subjects_sunbird_issues(subject: str, user: str) -> None:
    assert user_of_subject(subject) == user


@pytest.mark.parametrize(
    "subject",
    [
        "anything:u-admin",  # the issue's example: once taken as u-admin
        "f::u-admin", "f:fed:", ":u-admin", "u-admin:", "f:", ":", "::",
        "a:b:c:d", "f:a:b:c", "g:fed:u-admin", "F:fed:u-admin",
        "", " u-admin", "u-admin ", "u admin", "u-admin\n", "u\x00admin", "u\u200badmin", "\ud800", "u" * 257,
        7, None, ["u-admin"],
    ],
)
def test_any_other_subject_is_refused(subject: Any) -> None:
    with pytest.raises(AuthError) as caught:
        user_of_subject(subject)
    assert caught.value.status == 401
    assert caught.value.detail.startswith(("the token's subject (sub)", "the token names no user"))


def test_a_refused_subject_says_which_forms_are_accepted(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys))
    assert refusal(auth, token(old, "anything:u-admin", kid="kid-old")) == (
        "the token's subject (sub) 'anything:u-admin' is not a user id: "
        "expected 'f:<federation id>:<user id>' or a user id without ':'"
    )


# --- where the token is read from -------------------------------------------------------------------


def test_the_user_token_header_wins_over_authorization(keys: Path, old: Any) -> None:
    auth = JwtAuth(keys=load_key_directory(keys))
    mine, other = token(old, "u-admin", kid="kid-old"), token(old, "u-ravi", kid="kid-old")
    assert auth.user_of_request(Headers({**user_token(mine), **bearer(other)})) == "u-admin"
    # behind Kong: Authorization carries the gateway's key, never read as the user's token
    assert auth.user_of_request(Headers({**user_token(mine), **bearer("gateway-consumer-key")})) == "u-admin"
    assert auth.user_of_request(Headers({**user_token(mine), "Authorization": "Basic dTpw"})) == "u-admin"
    # a user-token header that is there but bad or empty: refused, Authorization is not a fallback
    with pytest.raises(AuthError, match="the x-authenticated-user-token header is empty"):
        auth.user_of_request(Headers({**user_token(" "), **bearer(other)}))
    with pytest.raises(AuthError, match="the token has expired"):
        auth.user_of_request(Headers({**user_token(token(old, kid="kid-old", expires_in=-60)), **bearer(other)}))
    # direct calls: Authorization
    assert auth.user_of_request(Headers(bearer(other))) == "u-ravi"
    assert auth.user_of_request(Headers({"authorization": f"bearer   {other} "})) == "u-ravi"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "a token is required: in the x-authenticated-user-token header or as 'Authorization: Bearer <token>'"),
        ({"Authorization": "  "}, "a token is required"),
        ({"Authorization": "Bearer"}, "the Authorization header must be 'Bearer <token>'"),
        ({"Authorization": "Basic dTpw"}, "the Authorization header must be 'Bearer <token>'"),
        ({"x-authenticated-user-token": ""}, "the x-authenticated-user-token header is empty"),
    ],
)
def test_no_token(headers: dict[str, str], message: str) -> None:
    with pytest.raises(AuthError) as caught:
        token_of(Headers(headers))
    assert caught.value.status == 401 and caught.value.detail.startswith(message)


# --- the settings -----------------------------------------------------------------------------------


def test_the_settings_build_the_verifier(keys: Path, old: Any) -> None:
    auth = authenticator(settings(
        auth_mode="jwt", accesstoken_publickey_basepath=str(keys), sso_url="https://sunbird.example/auth/",
        sso_realm="sunbird", auth_audience="handover, account", auth_max_token_lifetime_seconds="3600",
    ))
    assert auth is not None
    assert sorted(auth.keys) == ["kid-new", "kid-old"] and auth.default_key is None
    assert (auth.issuer, auth.audience, auth.max_lifetime_seconds) == (ISSUER, ("handover", "account"), 3600)
    assert auth.user_of_token(token(old, "f:fed:u-1", kid="kid-old", iss=ISSUER, aud="account")) == "u-1"
    assert authenticator(settings(auth_mode="none", accesstoken_publickey_basepath="/nowhere")) is None


def test_the_settings_from_a_sunbird_style_file(tmp_path: Path, keys: Path) -> None:
    conf = tmp_path / "handover.conf"
    conf.write_text(
        f'accesstoken.publickey.basepath = "{keys}/"\n'
        'sso {\n  url = "https://sunbird.example/auth/"\n  realm = "sunbird"\n}\n'
        "auth {\n  max_token_lifetime.seconds = 86400\n  cookie.secure = true\n  protect_metrics_and_docs = true\n}\n"
    )
    s = load_settings(conf, environ={})
    assert s.unknown_keys == ()
    assert s["accesstoken.publickey.basepath"] == f"{keys}/"
    assert expected_issuer(s) == ISSUER
    assert s["auth.max_token_lifetime.seconds"] == 86400
    assert s["auth.cookie.secure"] is True and s["auth.protect_metrics_and_docs"] is True


@pytest.mark.parametrize(("value", "parsed"), [("auto", None), ("AUTO", None), ("true", True), ("off", False)])
def test_cookie_secure_setting(value: str, parsed: bool | None) -> None:
    assert settings(auth_cookie_secure=value)["auth.cookie.secure"] is parsed
    assert settings()["auth.cookie.secure"] is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_cookie_secure": "sometimes"}, "auth.cookie.secure: expected auto, true or false"),
        ({"auth_max_token_lifetime_seconds": "-1"}, "expected 0 or a positive integer"),
        ({"auth_max_token_lifetime_seconds": "1h"}, "expected an integer"),
        ({"auth_protect_metrics_and_docs": "maybe"}, "expected true or false"),
    ],
)
def test_bad_settings_are_config_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "neither accesstoken.publickey.basepath"),
        ({"accesstoken_publickey_basepath": "/no/such/dir"}, "is not a directory"),
        ({"auth_public_key": "/no/such/key.pem"}, "not a readable file"),
        ({"auth_public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}, "not a valid PEM"),
    ],
)
def test_jwt_mode_without_a_usable_key_is_a_config_error(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        authenticator(settings(auth_mode="jwt", **values))


@pytest.mark.parametrize("form", ["pem", "pem-file", "body-file"])
def test_the_single_key_as_text_or_file(tmp_path: Path, old: Any, form: str) -> None:
    text = public_pem(old) if form.startswith("pem") else public_body(old)
    if form.endswith("file"):
        (tmp_path / "key").write_text(text)
        text = str(tmp_path / "key")
    auth = authenticator(settings(auth_mode="jwt", auth_public_key=text))
    assert auth is not None and auth.user_of_token(token(old)) == "u-admin"
