"""Authentication of the HTTP API and the console (``auth.mode``, SPEC 5): RS256 JWTs of the user, as Sunbird
clients send them, or nothing at all for local use (``none``).

Where the token is read (``token_of``):

- ``x-authenticated-user-token``: the user's Keycloak token as Sunbird clients send it through the API gateway
  (userorg-service ``RequestInterceptor`` reads this header). Behind Kong, ``Authorization: Bearer`` carries the
  gateway's own key, so when this header is present ``Authorization`` is never taken as the user's token.
- ``Authorization: Bearer <token>``: direct calls.

Which key verifies it (``JwtAuth.key_for``):

- ``accesstoken.publickey.basepath``: a directory of RSA public keys, as userorg-service's ``KeyManager`` reads
  it: every regular file below it (sub-directories too, symbolic links to files followed), the file's name is the
  key id (``kid``) the token's header names, its content the key: the base64 body of an X.509
  SubjectPublicKeyInfo (newlines allowed, no armour) or the same in PEM armour. Several keys at once, so that a
  new Keycloak key can be added before the old one is retired. Read once at start-up (as upstream): restart to
  pick up a new file. A file that is not such a key is named in a warning and skipped; a directory without any
  usable key, or one ``kid`` with two different keys, is a ``ConfigError``.
- ``auth.public_key``: one key (PEM text, or the path of a file holding a PEM or a base64 body) for tokens
  without a ``kid`` or with a ``kid`` the directory does not have.

What is checked: the RS256 signature, ``exp`` (required; 10 s leeway), ``iat`` not in the future when present,
``sub`` (required), and when configured: the issuer, the audience and the longest lifetime. The issuer is
``auth.issuer``, or ``{sso.url}realms/{sso.realm}`` as Sunbird's ``AccessTokenValidator.checkIss`` builds it
(compared ignoring case, as upstream; a ``/`` is put between ``sso.url`` and ``realms`` when ``sso.url`` lacks
it, where upstream would never match). ``auth.audience``: the token's ``aud`` must name one of these.
``auth.max_token_lifetime.seconds`` (0: no limit): ``exp - iat`` above it is refused, and so is a token without
``iat``.

The token's user is its ``sub``: a Keycloak subject ``f:<federation id>:<user id>`` (exactly three parts, none
empty) names ``<user id>``; a subject without ``:`` is the user id itself. Anything else is refused (upstream
takes whatever follows the last ``:``).

Every refusal is an ``AuthError`` with status 401 and a sentence saying why (``detail``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from handover.config import ConfigError, Settings

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]
LEEWAY_SECONDS = 10
USER_TOKEN_HEADER = "x-authenticated-user-token"  # Sunbird's header for the user's token (userorg HeaderParam)
MAX_SUBJECT_LENGTH = 256
_SHOWN = 64  # characters of a token's value quoted in an error message


class AuthError(Exception):
    """401 (no or bad token) or 403 (a good token of another user); ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:_SHOWN] + ("..." if len(text) > _SHOWN else ""))


# --- keys -------------------------------------------------------------------------------------------


def parse_public_key(text: str) -> RSAPublicKey:
    """An RSA public key from a PEM text or from the base64 body of an X.509 SubjectPublicKeyInfo (whitespace
    ignored), the two forms a Sunbird key file takes. ``ValueError`` saying why otherwise."""
    stripped = text.strip()
    if "-----BEGIN" in stripped:
        key = load_pem_public_key(stripped.encode("utf-8"))
    else:
        body = "".join(stripped.split())
        if not body:
            raise ValueError("empty")
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("neither a PEM key nor a base64 key body") from None
        key = load_der_public_key(der)
    if not isinstance(key, RSAPublicKey):
        kind = type(key).__name__.removeprefix("_")
        raise ValueError(f"not an RSA public key: {kind}")
    return key


def load_public_key(value: str) -> RSAPublicKey:
    """``auth.public_key``: the PEM text itself, or the path of a file holding a PEM or a base64 key body."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"auth.public_key: not a PEM key and not a readable file: {text[:80]!r} ({exc})"
            ) from None
    try:
        return parse_public_key(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"auth.public_key: not a valid PEM public key ({exc})") from None


def load_key_directory(base: str | Path) -> dict[str, RSAPublicKey]:
    """``accesstoken.publickey.basepath``: ``{kid: key}`` from every regular file below ``base`` (the file's name
    is the kid). Unreadable files and files that hold no RSA public key are named in a warning and skipped.
    ``ConfigError`` when ``base`` is not a directory, when no key could be read, or when one kid has two
    different keys (two files of the same name in different sub-directories)."""
    root = Path(base).expanduser()
    if not root.is_dir():
        raise ConfigError(f"accesstoken.publickey.basepath: {str(root)!r} is not a directory")
    keys: dict[str, RSAPublicKey] = {}
    where: dict[str, Path] = {}
    skipped = 0
    for folder, dirs, files in os.walk(root, onerror=_walk_error):  # symbolic links to directories: not entered
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if not path.is_file():  # a dangling link, a socket, ...
                continue
            try:
                key = parse_public_key(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
                log.warning("accesstoken.publickey.basepath: %s skipped (%s)", path, exc)
                skipped += 1
                continue
            if name in keys and _der(keys[name]) != _der(key):
                raise ConfigError(
                    f"accesstoken.publickey.basepath: key id {name!r} has two different keys: {where[name]} and {path}"
                )
            keys[name], where[name] = key, path
    if not keys:
        raise ConfigError(
            f"accesstoken.publickey.basepath: no RSA public key could be read from {str(root)!r} "
            f"({skipped} file(s) skipped; each file is one key, named by its key id)"
        )
    log.info("accesstoken.publickey.basepath: %d key(s) from %s: %s", len(keys), root, ", ".join(sorted(keys)))
    return keys


def _walk_error(exc: OSError) -> None:
    log.warning("accesstoken.publickey.basepath: %s not read (%s)", exc.filename, exc.strerror)


def _der(key: RSAPublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# --- the token of a request -------------------------------------------------------------------------


def token_of(headers: Mapping[str, str]) -> str:
    """The user's token: ``x-authenticated-user-token`` when that header is present (``Authorization`` then
    carries the gateway's key and is not looked at), else ``Authorization: Bearer <token>``. ``AuthError(401)``
    when neither holds a token."""
    user_token = headers.get(USER_TOKEN_HEADER)
    if user_token is not None:
        token = user_token.strip()
        if not token:
            raise AuthError(401, f"the {USER_TOKEN_HEADER} header is empty")
        return token
    authorization = headers.get("authorization")
    if not authorization or not authorization.strip():
        raise AuthError(
            401, f"a token is required: in the {USER_TOKEN_HEADER} header or as 'Authorization: Bearer <token>'"
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "the Authorization header must be 'Bearer <token>'")
    return token


def user_of_subject(subject: Any) -> str:
    """The user id of a token's ``sub``: ``f:<federation id>:<user id>`` -> ``<user id>``; a subject without
    ``:`` as it is. ``AuthError(401)`` for any other form, an empty part, whitespace or control characters, or
    more than ``MAX_SUBJECT_LENGTH`` characters."""
    expected = "expected 'f:<federation id>:<user id>' or a user id without ':'"
    if not isinstance(subject, str) or not subject:
        raise AuthError(401, "the token names no user (no subject, sub)")
    if len(subject) > MAX_SUBJECT_LENGTH or any(_not_in_an_id(c) for c in subject):
        raise AuthError(401, f"the token's subject (sub) is not a user id: {_shown(subject)}")
    parts = subject.split(":")
    if len(parts) == 1:
        return subject
    if len(parts) == 3 and parts[0] == "f" and parts[1] and parts[2]:
        return parts[2]
    raise AuthError(401, f"the token's subject (sub) {_shown(subject)} is not a user id: {expected}")


def _not_in_an_id(char: str) -> bool:
    # whitespace, control and format characters, lone surrogates, unassigned code points
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


# --- the verifier -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JwtAuth:
    """Verifies RS256 user tokens (see the module's docstring for the rules and the settings they come from)."""

    keys: Mapping[str, RSAPublicKey] = field(default_factory=dict)  # by kid (accesstoken.publickey.basepath)
    default_key: RSAPublicKey | None = None  # auth.public_key
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    max_lifetime_seconds: int = 0  # 0: no limit

    def __post_init__(self) -> None:
        if not self.keys and self.default_key is None:
            raise ConfigError("JwtAuth needs at least one public key")

    def key_for(self, kid: Any) -> RSAPublicKey:
        """The key of a token's ``kid`` (a header value, any JSON type or None); ``AuthError(401)`` without one."""
        if kid is not None and not isinstance(kid, str):
            raise AuthError(401, f"the token's key id (kid) is not a string: {_shown(kid)}")
        if kid is not None and kid in self.keys:
            return self.keys[kid]
        if self.default_key is not None:
            return self.default_key
        if kid is None:
            raise AuthError(401, "the token names no key id (kid), and there is no single key (auth.public_key)")
        raise AuthError(401, f"the token's key id (kid) {_shown(kid)} is not one of the configured keys")

    def user_of_token(self, token: str) -> str:
        """The user of a token (see ``user_of_subject``); ``AuthError(401)`` saying why it is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"the token is not valid: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthError(401, f"the token is not signed with RS256 (alg {_shown(header.get('alg'))})")
        key = self.key_for(header.get("kid"))
        claims = self._claims(token, key)
        self._check_issuer(claims.get("iss"))
        self._check_lifetime(claims)
        return user_of_subject(claims.get("sub"))

    def user_of_request(self, headers: Mapping[str, str]) -> str:
        """The user of the request's token (``token_of``); ``AuthError(401)`` saying why there is none."""
        return self.user_of_token(token_of(headers))

    def _claims(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                leeway=LEEWAY_SECONDS,
                audience=list(self.audience) or None,
                options={"require": ["exp", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "the token has expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError(401, "the token signature is not valid") from None
        except jwt.MissingRequiredClaimError as exc:
            names = {"exp": "no expiry (exp)", "sub": "no subject (sub)", "aud": "no audience (aud)"}
            raise AuthError(401, f"the token has {names.get(exc.claim, repr(exc.claim))}") from None
        except jwt.InvalidAudienceError:
            raise AuthError(401, "the token's audience (aud) is not one this service accepts (auth.audience)") from None
        except jwt.ImmatureSignatureError as exc:
            raise AuthError(401, f"the token is not valid yet: {exc}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"the token is not valid: {exc}") from None
        return claims

    def _check_issuer(self, issuer: Any) -> None:
        if self.issuer is None:
            return
        if not isinstance(issuer, str) or not issuer:
            raise AuthError(401, "the token names no issuer (iss)")
        if issuer.lower() != self.issuer.lower():
            raise AuthError(401, f"the token's issuer (iss) {_shown(issuer)} is not the one this service accepts")

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        if not self.max_lifetime_seconds:
            return
        issued, expires = claims.get("iat"), claims["exp"]
        if issued is None:
            raise AuthError(
                401, "the token has no issue time (iat), and a longest token lifetime is set "
                "(auth.max_token_lifetime.seconds)"
            )
        lifetime = float(expires) - float(issued)  # both numbers: PyJWT checked them
        if lifetime > self.max_lifetime_seconds:
            raise AuthError(
                401, f"the token's lifetime (exp - iat = {lifetime:.0f} s) is longer than the "
                f"{self.max_lifetime_seconds} s allowed (auth.max_token_lifetime.seconds)"
            )


def expected_issuer(settings: Settings) -> str | None:
    """``auth.issuer``, or ``{sso.url}realms/{sso.realm}`` (Sunbird's convention), or None (no issuer check).
    ``ConfigError`` when only one of ``sso.url`` and ``sso.realm`` is set, or ``auth.issuer`` with them."""
    issuer, url, realm = settings["auth.issuer"], settings["sso.url"], settings["sso.realm"]
    if issuer and (url or realm):
        raise ConfigError(
            "set either auth.issuer or sso.url with sso.realm (the issuer is then {sso.url}realms/{sso.realm})"
        )
    if issuer:
        return str(issuer).strip()
    if bool(url) != bool(realm):
        missing = "sso.realm" if url else "sso.url"
        raise ConfigError(f"{missing} is not set: the issuer check needs both sso.url and sso.realm")
    if not url:
        return None
    base = str(url).strip()
    return (base if base.endswith("/") else base + "/") + "realms/" + str(realm).strip()


def authenticator(settings: Settings) -> JwtAuth | None:
    """``JwtAuth`` for ``auth.mode = jwt`` (a ``ConfigError`` without a usable key or with contradictory
    settings), None for ``none``."""
    if settings["auth.mode"] == "none":
        return None
    basepath, single = settings["accesstoken.publickey.basepath"], settings["auth.public_key"]
    if not basepath and not single:
        raise ConfigError(
            "auth.mode is jwt but neither accesstoken.publickey.basepath (a directory of public keys, "
            "HANDOVER_ACCESSTOKEN_PUBLICKEY_BASEPATH) nor auth.public_key is set (HANDOVER_AUTH_PUBLIC_KEY: a PEM "
            "key or its path); set HANDOVER_AUTH_MODE=none for local use without authentication"
        )
    issuer = expected_issuer(settings)
    return JwtAuth(
        keys=load_key_directory(basepath) if basepath else {},
        default_key=load_public_key(single) if single else None,
        issuer=issuer,
        audience=tuple(a.strip() for a in settings["auth.audience"] if a.strip()),
        max_lifetime_seconds=settings["auth.max_token_lifetime.seconds"],
    )
