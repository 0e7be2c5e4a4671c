"""User authentication: verifying JWTs against the app's auth providers, and the sync layer's
`Authenticate` handling.

Providers are the objects of Convex's `auth.config` `providers` list (convex-protocol.md §5.2):

    {"domain": "https://issuer.example.com", "applicationID": "my-app"}                # OIDC
    {"type": "customJwt", "issuer": "https://issuer.example.com", "jwks": "<https or data: URL>",
     "algorithm": "RS256" | "ES256", "applicationID": "optional"}                      # custom JWT

They come from the app's optional `auth_config.py` (exporting `providers`) followed by the JSON list
in $CONVEX_AUTH_PROVIDERS. A token is routed to the first provider whose issuer matches its `iss`
(https:// prepended when schemeless, trailing slashes ignored) and, when the provider names an
applicationID, whose `aud` contains it; no match is "NoAuthProvider".

Invariants:
- The token itself never appears in an error message or a log line (claims we checked may).
- The signature is checked before any claim is believed; routing on unverified claims can at worst
  pick the wrong provider, whose keys then reject the token.
- Every verification failure is `EngineError(code, message, status=401)` (a failed OIDC discovery:
  400) with Convex's code and text (crates/authentication `validate_id_token`, biscuit's temporal
  messages): custom JWTs need a `kid`; "Could not validate token: Token expired N seconds ago";
  OIDC tokens that fail any check read "Could not verify OIDC token claim. ..." (`Unauthenticated`).
- Nothing is fetched or parsed at start-up: a provider whose JWKS is unreachable or malformed only
  fails its own tokens, at validation.
- Key sets and discovery documents are cached per URL (Cache-Control max-age, else a default TTL),
  a token naming an unknown `kid` refetches at most once per `min_refetch_interval`, the cache holds
  a bounded number of URLs, and concurrent misses for one URL share one fetch.
- The identity object is Convex's UserIdentity (tokenIdentifier "<iss>|<sub>", camelCased standard
  OIDC claims, the rest as top-level custom claims) made of Convex values (JSON numbers -> float).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Callable, Iterable, Mapping

import jwt

from .errors import EngineError
from .runner import Auth
from .values import from_wire

__all__ = [
    "AUTH_PROVIDERS_ENV",
    "AuthProviders",
    "Provider",
    "VerifiedUser",
    "authenticate",
    "authenticate_with_expiry",
    "impersonated_identity",
    "parse_providers",
    "token_expired_error",
]

log = logging.getLogger("engine.auth")

AUTH_PROVIDERS_ENV = "CONVEX_AUTH_PROVIDERS"

_OIDC_ALGORITHMS = ("RS256", "EdDSA")
_CUSTOM_JWT_ALGORITHMS = ("RS256", "ES256")
_JWKS_MEDIA_TYPES = ("application/json", "application/jwk-set+json")
_CUSTOM_JWT_LEEWAY_S = 5.0
_MAX_TOKEN_CHARS = 64 * 1024
_MAX_RESPONSE_BYTES = 1024 * 1024
_MIN_TTL_S = 30.0
_MAX_TTL_S = 24 * 3600.0

# OIDC claims surfaced as typed UserIdentity fields: claim -> (identity key, python type).
_OIDC_STANDARD: dict[str, tuple[str, type]] = {
    "name": ("name", str),
    "given_name": ("givenName", str),
    "family_name": ("familyName", str),
    "nickname": ("nickname", str),
    "preferred_username": ("preferredUsername", str),
    "profile": ("profileUrl", str),
    "picture": ("pictureUrl", str),
    "website": ("websiteUrl", str),
    "email": ("email", str),
    "email_verified": ("emailVerified", bool),
    "gender": ("gender", str),
    "birthdate": ("birthday", str),
    "zoneinfo": ("timezone", str),
    "locale": ("language", str),
    "phone_number": ("phoneNumber", str),
    "phone_number_verified": ("phoneNumberVerified", bool),
}
# Never custom claims for OIDC tokens: the ID-token fields the OIDC library consumes itself, the
# standard claims above (incl. their "name#en" localized forms and the unmapped middle_name), and
# claims that change on every refresh (jti, nbf, Clerk's fva) and would only defeat caching.
_OIDC_NOT_CUSTOM = frozenset({
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "at_hash", "c_hash",
    "address", "updated_at", "middle_name", "jti", "nbf", "fva", *_OIDC_STANDARD,
})
_LOCALIZABLE = frozenset({"name", "given_name", "family_name", "middle_name", "nickname", "profile",
                          "picture", "website"})
# Registered JWT claims: a custom JWT's every other claim is a custom claim.
_JWT_REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


def _unauthenticated(code: str, message: str) -> EngineError:
    return EngineError(code, message, status=401)


def token_expired_error() -> EngineError:
    """What a sync session reports when a previously valid user token runs out (Convex's text)."""
    return _unauthenticated("TokenExpired", "Convex token identity expired")


def _config_error(message: str) -> EngineError:
    return EngineError("InvalidAuthConfig", message, status=500)


# --------------------------------------------------------------------------------------- providers

_SCHEME = re.compile(r"^\w+://")


def _with_scheme(url: str) -> str:
    return url if url.startswith(("https://", "http://")) else f"https://{url}"


def _issuer_key(url: str) -> str:
    """The form issuers are compared in: https:// added when schemeless, trailing slashes dropped."""
    return _with_scheme(url).rstrip("/")


@dataclass(frozen=True)
class Provider:
    """One configured provider. `issuer` is normalized (scheme added, trailing slashes dropped)."""

    kind: str  # "oidc" | "customJwt"
    issuer: str
    application_id: str | None
    jwks: str | None = None  # customJwt only
    algorithm: str | None = None  # customJwt only

    @property
    def algorithms(self) -> tuple[str, ...]:
        return _OIDC_ALGORITHMS if self.kind == "oidc" else (self.algorithm,)  # type: ignore[return-value]

    def matches(self, issuer: str, audiences: list[str]) -> bool:
        if self.application_id is not None and self.application_id not in audiences:
            return False
        return _issuer_key(issuer) == self.issuer

    def describe(self) -> str:
        if self.kind == "oidc":
            return f"OIDC(domain={self.issuer}, app_id={self.application_id})"
        return f"CustomJWT(issuer={self.issuer}, app_id={self.application_id or 'none'})"


def _provider_url(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _config_error(f"Auth provider `{field}` must be a non-empty string, got {raw!r}.")
    url = raw.strip()
    if not _SCHEME.match(url):
        url = f"https://{url}"
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise _config_error(f"Invalid auth provider {field} URL {raw!r}: expected an http(s) URL.")
    return url.rstrip("/")


def _parse_provider(obj: Any, index: int) -> Provider:
    if not isinstance(obj, Mapping):
        raise _config_error(f"Auth provider #{index} must be an object, got {type(obj).__name__}.")
    kind = obj.get("type")
    if kind is None or kind == "oidc":
        app_id = obj.get("applicationID")
        if not isinstance(app_id, str) or not app_id:
            raise _config_error(f"OIDC auth provider #{index} needs a string `applicationID`.")
        return Provider("oidc", _provider_url(obj.get("domain"), "domain"), app_id)
    if kind != "customJwt":
        raise _config_error(f"Auth provider #{index} has unknown type {kind!r}; expected \"customJwt\" "
                            "or an OIDC provider ({domain, applicationID}).")
    app_id = obj.get("applicationID")
    if app_id is not None and (not isinstance(app_id, str) or not app_id):
        raise _config_error(f"customJwt auth provider #{index}: `applicationID` must be a string.")
    algorithm = obj.get("algorithm")
    if algorithm not in _CUSTOM_JWT_ALGORITHMS:
        raise _config_error(f"customJwt auth provider #{index}: invalid signature algorithm {algorithm!r} "
                            "(only RS256 and ES256 are supported).")
    jwks = obj.get("jwks")
    if not isinstance(jwks, str) or not jwks.strip():
        raise _config_error(f"customJwt auth provider #{index} needs `jwks`: an https URL or a data: URL.")
    # The key set is not fetched or parsed here: as in Convex, a provider whose JWKS is unreachable
    # or malformed does not stop the deployment; only its tokens fail, at validation.
    jwks = jwks.strip()
    return Provider("customJwt", _provider_url(obj.get("issuer"), "issuer"), app_id, jwks, algorithm)


def parse_providers(objs: Any) -> tuple[Provider, ...]:
    """A providers list (or an auth config object `{"providers": [...]}`) -> Providers."""
    if isinstance(objs, Mapping) and "providers" in objs:
        objs = objs["providers"]
    if objs is None:
        return ()
    if not isinstance(objs, (list, tuple)):
        raise _config_error(f"Auth providers must be a list of provider objects, got {type(objs).__name__}.")
    return tuple(_parse_provider(obj, i) for i, obj in enumerate(objs))


def _app_providers(app: Any) -> Any:
    """The `providers` exported by the app's auth_config.py (imported inside the app's package)."""
    root = getattr(app, "root", None)
    package = getattr(app, "package", "")
    if root is None or not package or not (root / "auth_config.py").exists():
        return None
    import importlib

    try:
        module = importlib.import_module(f"{package}.auth_config")
    except Exception as e:
        raise EngineError("AppLoadError", f"Loading {root / 'auth_config.py'} failed: "
                                          f"{type(e).__name__}: {e}") from e
    config = getattr(module, "providers", None)
    if config is None:
        config = getattr(module, "auth_config", None) or getattr(module, "default", None)
    if config is None:
        raise _config_error(f"{root / 'auth_config.py'} must export `providers` (a list of provider objects).")
    return config


# --------------------------------------------------------------------------------------- key sets

_BAD_DATA_URL = ("Invalid JWKS data URL. Check that the data URL is properly formatted and contains valid "
                 "base64-encoded JSON.")


def _decode_data_url(url: str) -> bytes:
    """data:[<media type>][;base64],<data> -> bytes (base64 or percent-encoded payload)."""
    header, sep, payload = url[len("data:"):].partition(",")
    if not sep:
        raise _unauthenticated("InvalidAuthHeader", _BAD_DATA_URL)
    if header.lower().endswith(";base64"):
        text = re.sub(r"\s+", "", urllib.parse.unquote(payload))
        text += "=" * (-len(text) % 4)
        try:
            return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise _unauthenticated("InvalidAuthHeader", _BAD_DATA_URL) from None
    return urllib.parse.unquote_to_bytes(payload)


@dataclass(frozen=True)
class _Key:
    kid: str | None
    algorithm: str
    key: Any


def _parse_jwks(body: bytes, source: str) -> tuple[_Key, ...]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise _unauthenticated("InvalidAuthHeader", f"Invalid JWKS response body from '{source}'. The response "
                                                    "is not valid JSON or doesn't match the expected JWKS format.")
    keys = []
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        try:
            parsed = jwt.PyJWK(jwk)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue  # a key type or curve we do not support; other keys may still be usable
        kid = jwk.get("kid")
        keys.append(_Key(kid if isinstance(kid, str) else None, parsed.algorithm_name, parsed.key))
    return tuple(keys)


@dataclass
class _Entry:
    value: Any  # a parsed discovery document (dict) or a tuple of _Key
    fetched_at: float
    expires_at: float


def _max_age(cache_control: str | None) -> float | None:
    if not cache_control:
        return None
    directives = [d.strip().lower() for d in cache_control.split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for d in directives:
        if d.startswith("max-age="):
            try:
                return float(int(d[len("max-age="):]))
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class _Response:
    status: int
    content_type: str | None
    cache_control: str | None
    body: bytes


def _http_get(url: str, context: ssl.SSLContext | None, timeout: float) -> _Response:
    """Blocking GET (run in a thread): status, headers we use, and at most 1 MiB of body."""
    handlers: list[Any] = [urllib.request.HTTPSHandler(context=context)] if context is not None else []
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "nova-command-engine-auth"})
    try:
        with opener.open(request, timeout=timeout) as resp:
            body = resp.read(_MAX_RESPONSE_BYTES + 1)
            return _Response(resp.status, resp.headers.get("Content-Type"),
                             resp.headers.get("Cache-Control"), body)
    except urllib.error.HTTPError as e:
        with e:
            return _Response(e.code, e.headers.get("Content-Type"), None, b"")


# --------------------------------------------------------------------------------------- identity

def _claim_value(value: Any) -> Any:
    """A JSON claim as a Convex value, the way the JS runtime's jsonToConvex would read it."""
    return from_wire(value)


def _rfc3339(seconds: Any) -> str | None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    if moment.microsecond == 0:
        return moment.isoformat(timespec="seconds")
    if moment.microsecond % 1000 == 0:
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="microseconds")


def _add_custom(identity: dict[str, Any], key: str, value: Any) -> None:
    if key in identity:
        return  # never let a custom claim shadow tokenIdentifier, subject, issuer or a standard claim
    try:
        identity[key] = _claim_value(value)
    except ValueError as e:
        # Convex would fail the whole getUserIdentity() call; dropping one odd claim is kinder.
        log.warning("dropping JWT claim %r: not representable as a Convex value (%s)", key, e)


def _base_identity(claims: Mapping[str, Any]) -> dict[str, Any]:
    issuer, subject = claims["iss"], claims["sub"]
    return {"tokenIdentifier": f"{issuer}|{subject}", "subject": subject, "issuer": issuer}


def oidc_identity(claims: Mapping[str, Any]) -> dict[str, Any]:
    """UserIdentity for a verified OIDC ID token."""
    identity = _base_identity(claims)
    for claim, (key, typ) in _OIDC_STANDARD.items():
        value = claims.get(claim)
        if isinstance(value, typ):
            identity[key] = value
    address = claims.get("address")
    if isinstance(address, dict) and isinstance(address.get("formatted"), str):
        identity["address"] = address["formatted"]
    updated_at = _rfc3339(claims.get("updated_at"))
    if updated_at is not None:
        identity["updatedAt"] = updated_at
    for claim, value in claims.items():
        if claim in _OIDC_NOT_CUSTOM or claim.partition("#")[0] in _LOCALIZABLE:
            continue
        _add_custom(identity, claim, value)
    return identity


def _flatten(prefix: str, obj: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(f"{path}.", value, out)
        else:
            out[path] = value


def custom_jwt_identity(claims: Mapping[str, Any]) -> dict[str, Any]:
    """UserIdentity for a verified custom JWT: every non-registered claim is a custom claim, nested
    objects flattened to dotted keys ("org.id")."""
    identity = _base_identity(claims)
    flat: dict[str, Any] = {}
    _flatten("", {k: v for k, v in claims.items() if k not in _JWT_REGISTERED}, flat)
    flat.pop("fva", None)
    for key, value in flat.items():
        _add_custom(identity, key, value)
    return identity


def impersonated_identity(attributes: Any) -> dict[str, Any]:
    """The identity an admin acts as (`Authenticate{tokenType:"Admin", impersonating}` or
    `Authorization: Convex <key>:<base64 JSON>`): UserIdentityAttributes JSON, with `customClaims`
    merged in at the top level and tokenIdentifier derived from issuer|subject when absent."""
    if not isinstance(attributes, Mapping):
        raise EngineError("InvalidImpersonation", "The impersonated identity must be an object.")
    attrs = dict(attributes)
    custom = attrs.pop("customClaims", None)
    if isinstance(custom, Mapping):
        for key, value in custom.items():
            attrs.setdefault(key, value)
    if not isinstance(attrs.get("tokenIdentifier"), str):
        issuer, subject = attrs.get("issuer"), attrs.get("subject")
        if not (isinstance(issuer, str) and isinstance(subject, str)):
            raise EngineError("InvalidImpersonation",
                              'Either "tokenIdentifier" or "issuer" and "subject" must be set.')
        attrs["tokenIdentifier"] = f"{issuer}|{subject}"
    try:
        return from_wire(attrs)
    except ValueError as e:
        raise EngineError("InvalidImpersonation", f"The impersonated identity is not a Convex object: {e}") from None


# --------------------------------------------------------------------------------------- verifier

@dataclass(frozen=True)
class VerifiedUser:
    """A verified token's identity and when it stops being valid (unix seconds)."""

    identity: dict[str, Any]
    expires_at: float


class AuthProviders:
    """The configured providers plus the key cache; `await verify(token)` -> identity dict.

    ssl_context: trust for https fetches (None = the system's default trust store, which also
    honours $SSL_CERT_FILE); tests pass a context trusting their self-signed certificate.
    """

    def __init__(
        self,
        providers: Any = (),
        *,
        ssl_context: ssl.SSLContext | None = None,
        http_timeout: float = 10.0,
        cache_ttl: float = 3600.0,
        min_refetch_interval: float = 10.0,
        max_cache_entries: int = 64,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(providers, (list, tuple)) and all(isinstance(p, Provider) for p in providers):
            self.providers: tuple[Provider, ...] = tuple(providers)
        else:
            self.providers = parse_providers(providers)
        self.ssl_context = ssl_context
        self.http_timeout = http_timeout
        self.cache_ttl = cache_ttl
        self.min_refetch_interval = min_refetch_interval
        self.max_cache_entries = max_cache_entries
        self._clock = clock
        self._wall_clock = wall_clock  # unix seconds, for exp/nbf/iat (tests inject one)
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._static: dict[str, tuple[_Key, ...]] = {}
        self.fetch_count = 0  # https GETs made (for tests and diagnostics)

    @classmethod
    def load(cls, app: Any = None, environ: Mapping[str, str] | None = None, **options: Any) -> AuthProviders:
        """Providers from the app's auth_config.py, then $CONVEX_AUTH_PROVIDERS (a JSON list)."""
        environ = os.environ if environ is None else environ
        providers = list(parse_providers(_app_providers(app))) if app is not None else []
        raw = environ.get(AUTH_PROVIDERS_ENV, "").strip()
        if raw:
            try:
                config = json.loads(raw)
            except ValueError as e:
                raise _config_error(f"${AUTH_PROVIDERS_ENV} is not valid JSON: {e}") from None
            providers.extend(parse_providers(config))
        return cls(tuple(providers), **options)

    def __repr__(self) -> str:
        return f"AuthProviders([{', '.join(p.describe() for p in self.providers)}])"

    # -- verification ------------------------------------------------------------------------------
    async def verify(self, token: Any) -> dict[str, Any]:
        return (await self.verify_user(token)).identity

    async def verify_user(self, token: Any) -> VerifiedUser:
        """Convex's `validate_id_token` (crates/authentication): the same checks, in the same
        order, with the same codes and texts."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise _unauthenticated("InvalidAuthHeader", _UNPARSEABLE)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _unauthenticated("InvalidAuthHeader", _UNPARSEABLE) from None
        issuer = unverified.get("iss")
        if not isinstance(issuer, str):
            raise _unauthenticated("InvalidAuthHeader", _MISSING_ISSUER)
        audiences = _audiences(unverified.get("aud"))
        provider = next((p for p in self.providers if p.matches(issuer, audiences)), None)
        if provider is None:
            raise _unauthenticated("NoAuthProvider", self._no_provider_message())
        if provider.kind == "oidc":
            claims = await self._verify_oidc(token, provider, header, unverified, issuer)
            identity = oidc_identity(claims)
        else:
            claims = await self._verify_custom_jwt(token, provider, header)
            identity = custom_jwt_identity(claims)
        return VerifiedUser(identity, float(claims["exp"]))

    def _no_provider_message(self) -> str:
        if not self.providers:
            return ("No auth provider found matching the given token (no providers configured). Check "
                    f"auth_config.py or ${AUTH_PROVIDERS_ENV}.")
        return ("No auth provider found matching the given token. Check that your JWT's issuer and "
                "audience match one of your configured providers: "
                f"[{', '.join(p.describe() for p in self.providers)}]")

    # -- OIDC -----------------------------------------------------------------------------------
    async def _verify_oidc(self, token: str, provider: Provider, header: dict[str, Any],
                           unverified: dict[str, Any], issuer: str) -> dict[str, Any]:
        """Discovery, then the OIDC ID-token checks Convex's `openidconnect` verifier makes:
        RS256/EdDSA signature by a key of the JWKS, `iss`, `aud` (exactly the applicationID; a token
        naming other audiences too is refused), `exp` (no leeway)."""
        try:
            jwks_url = await self._discover_jwks_uri(provider.issuer)
            keys = await self._keys(jwks_url, refresh=False)
        except EngineError as e:
            raise _discovery_failed(issuer, e) from None
        required = {"iss": str, "sub": str, "aud": (str, list), "exp": (int, float), "iat": (int, float)}
        if any(not isinstance(unverified.get(k), t) or isinstance(unverified.get(k), bool)
               for k, t in required.items()):
            raise _unauthenticated("InvalidAuthHeader", _NOT_OIDC)
        alg = header.get("alg")
        alg = alg if isinstance(alg, str) else ""
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        candidates = _candidates(keys, alg, kid) if alg in _OIDC_ALGORITHMS else []
        if not candidates and kid is not None and alg in _OIDC_ALGORITHMS:
            try:  # the provider may have rotated its keys since we cached them
                candidates = _candidates(await self._keys(jwks_url, refresh=True), alg, kid)
            except EngineError as e:
                raise _discovery_failed(issuer, e) from None
        claims = None
        for candidate in candidates:
            try:
                claims = jwt.decode(token, candidate.key, algorithms=[alg], options={
                    "verify_aud": False, "verify_iss": False, "verify_exp": False, "verify_iat": False,
                    "verify_nbf": False})
                break
            except jwt.PyJWTError:
                continue
        audiences = _audiences(unverified.get("aud"))
        if (claims is None or _issuer_key(claims["iss"]) != provider.issuer
                or audiences != [provider.application_id] * len(audiences) or not audiences
                or float(claims["exp"]) <= self._wall_clock()):
            raise _unauthenticated("Unauthenticated", _OIDC_UNVERIFIED)
        return claims

    # -- custom JWTs -------------------------------------------------------------------------------
    async def _verify_custom_jwt(self, token: str, provider: Provider, header: dict[str, Any]) -> dict[str, Any]:
        """Convex's custom-JWT path: fetch the JWKS, pick the key the header's `kid` names and check
        the signature with the provider's algorithm, then issuer and audience, then the time claims
        with 5 s of leeway ("Token expired N seconds ago", "Token will be valid in N seconds"), then
        the claims a UserIdentity needs (sub, iss, exp)."""
        jwks_url: str = provider.jwks  # type: ignore[assignment]
        keys = await self._keys(jwks_url, refresh=False)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _unauthenticated("InvalidAuthHeader",
                                   "Could not decode token. JWT may be missing a 'kid' (key ID) header.")
        wrong_key = _unauthenticated("InvalidAuthHeader", f"Could not decode token. The JWT's 'kid' (key ID) header "
                                                          f"is '{kid}', does this key match any key in the provider's JWKS?")
        alg = provider.algorithm or ""
        matching = [k for k in keys if k.kid == kid]
        if not matching and not jwks_url.startswith("data:"):
            matching = [k for k in await self._keys(jwks_url, refresh=True) if k.kid == kid]
        if not matching or header.get("alg") != alg or matching[0].algorithm != alg:
            raise wrong_key
        try:
            claims = jwt.decode(token, matching[0].key, algorithms=[alg], options={
                "verify_aud": False, "verify_iss": False, "verify_exp": False, "verify_iat": False,
                "verify_nbf": False})
        except jwt.PyJWTError:
            raise wrong_key from None
        token_issuer = claims.get("iss")
        if not isinstance(token_issuer, str):
            raise _unauthenticated("InvalidAuthHeader", _MISSING_ISSUER)
        if _issuer_key(token_issuer) != provider.issuer:
            raise _unauthenticated("InvalidAuthHeader", f"Invalid issuer: {token_issuer} != {provider.issuer}")
        if provider.application_id is not None:
            if "aud" not in claims:
                raise _unauthenticated("InvalidAuthHeader",
                                       "Missing audience claim ('aud') in JWT payload. The JWT must include an "
                                       "'aud' claim that matches your configured application ID.")
            audiences = _audiences(claims.get("aud"))
            if provider.application_id not in audiences:
                shown = "[" + ", ".join(json.dumps(a) for a in audiences) + "]"
                raise _unauthenticated("InvalidAuthHeader",
                                       f"Invalid audience: {provider.application_id} not in {shown}")
        self._check_times(claims)
        if not isinstance(claims.get("sub"), str) or not _is_number(claims.get("exp")):
            raise _unauthenticated("InvalidAuthHeader", "Could not verify token claim. Check that the JWT contains "
                                                        "valid claims and matches your auth provider configuration.")
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """biscuit's temporal validation as Convex runs it: now in whole seconds, 5 s of leeway,
        `exp`, then `nbf`, then `iat` (not in the future); N truncated to whole seconds."""
        now = float(int(self._wall_clock()))
        exp, nbf, iat = (_seconds(claims.get(k)) for k in ("exp", "nbf", "iat"))
        problem = None
        if exp is not None and now - exp > _CUSTOM_JWT_LEEWAY_S:
            problem = f"Token expired {int(now - exp)} seconds ago"
        elif nbf is not None and nbf - now > _CUSTOM_JWT_LEEWAY_S:
            problem = f"Token will be valid in {int(nbf - now)} seconds"
        elif iat is not None and iat - now > _CUSTOM_JWT_LEEWAY_S:
            problem = f"Token will be valid in {int(iat - now)} seconds"
        if problem is not None:
            raise _unauthenticated("InvalidAuthHeader", f"Could not validate token: {problem}")

    # -- fetching ----------------------------------------------------------------------------------
    async def _discover_jwks_uri(self, base: str) -> str:
        url = f"{base}/.well-known/openid-configuration"
        entry = await self._cached(url, "discovery", refresh=False)
        return entry.value["jwks_uri"]

    async def _keys(self, url: str, *, refresh: bool) -> tuple[_Key, ...]:
        if url.startswith("data:"):
            keys = self._static.get(url)
            if keys is None:
                keys = self._static[url] = _parse_jwks(_decode_data_url(url), url)
            return keys
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise _unauthenticated("InvalidAuthHeader", f"Could not fetch JWKS from URL '{url}': unsupported URL "
                                                        "scheme. Check that the URL is correct and accessible.")
        return (await self._cached(url, "jwks", refresh=refresh)).value

    async def _cached(self, url: str, kind: str, *, refresh: bool) -> _Entry:
        now = self._clock()
        entry = self._cache.get(url)
        if entry is not None:
            fresh = now < entry.expires_at
            recently = now - entry.fetched_at < self.min_refetch_interval
            if (fresh and not refresh) or (refresh and recently):
                self._cache.move_to_end(url)
                return entry
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.ensure_future(self._fetch_entry(url, kind))
            self._inflight[url] = task
            task.add_done_callback(lambda t, url=url: self._fetch_done(url, t))
        try:
            return await asyncio.shield(task)
        except EngineError:
            if entry is not None:  # a stale answer beats none while the provider is unreachable
                log.warning("refetching %s failed; using the cached copy", url)
                return entry
            raise

    def _fetch_done(self, url: str, task: asyncio.Future[_Entry]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled():
            task.exception()  # retrieved here too: every awaiter may have been cancelled meanwhile

    async def _fetch_entry(self, url: str, kind: str) -> _Entry:
        """GET a JWKS or a discovery document. Failures carry Convex's custom-JWT texts (the OIDC
        path reports them as a failed discovery instead)."""
        self.fetch_count += 1
        what = "OIDC discovery document" if kind == "discovery" else "JWKS"
        try:
            resp = await asyncio.to_thread(_http_get, url, self.ssl_context, self.http_timeout)
        except (OSError, ValueError, urllib.error.URLError) as e:
            log.warning("fetching the %s from %s failed: %s", what, url, e)
            raise _unauthenticated("InvalidAuthHeader", f"Could not fetch JWKS from URL '{url}': {e}. Check that "
                                                        "the URL is correct and accessible.") from None
        if resp.status != 200:
            try:
                reason = HTTPStatus(resp.status).phrase
            except ValueError:
                reason = "Unknown"
            raise _unauthenticated("InvalidAuthHeader", f"Could not fetch JWKS from URL '{url}': HTTP {resp.status} "
                                                        f"{reason}. Check that the URL is correct and accessible.")
        if len(resp.body) > _MAX_RESPONSE_BYTES:
            raise _unauthenticated("InvalidAuthHeader", f"Could not fetch JWKS from URL '{url}': the response is "
                                                        "larger than 1 MiB.")
        if kind == "jwks":
            if not _jwks_media_type(resp.content_type):
                raise _unauthenticated(
                    "InvalidAuthHeader",
                    f"Invalid Content-Type '{resp.content_type or 'unknown'}' when fetching JWKS from '{url}'. "
                    "Expected 'application/json' or 'application/jwk-set+json'.")
            value: Any = _parse_jwks(resp.body, url)
        else:
            try:
                value = json.loads(resp.body)
            except (ValueError, UnicodeDecodeError):
                value = None
            expected = url[: -len("/.well-known/openid-configuration")]
            if not isinstance(value, dict) or not isinstance(value.get("jwks_uri"), str) \
                    or not isinstance(value.get("issuer"), str) or _issuer_key(value["issuer"]) != expected:
                raise _unauthenticated("InvalidAuthHeader", f"The OIDC discovery document at '{url}' is not valid.")
        max_age = _max_age(resp.cache_control)
        ttl = self.cache_ttl if max_age is None else min(max(max_age, _MIN_TTL_S), _MAX_TTL_S)
        now = self._clock()
        entry = _Entry(value, now, now + ttl)
        self._cache[url] = entry
        self._cache.move_to_end(url)
        while len(self._cache) > self.max_cache_entries:
            self._cache.popitem(last=False)
        return entry


_UNPARSEABLE = ("Could not parse JWT payload. Check that the token is a valid JWT format with three "
                "base64-encoded parts separated by dots.")
_MISSING_ISSUER = ("Missing issuer claim ('iss') in JWT payload. The JWT must include an 'iss' claim that "
                   "matches one of your configured auth providers.")
_NOT_OIDC = "Could not parse as OIDC ID token. Token might not be an OIDC-compliant JWT."
_OIDC_UNVERIFIED = ("Could not verify OIDC token claim. Check that the token signature is valid and the "
                    "token hasn't expired.")


def _discovery_failed(issuer: str, cause: EngineError) -> EngineError:
    """Convex reports any failure to get an OIDC provider's keys as a failed discovery."""
    log.info("auth provider discovery of %s failed: %s", issuer, cause.message)
    return EngineError("AuthProviderDiscoveryFailed", f"Auth provider discovery of {issuer} failed", status=400)


def _jwks_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() not in _JWKS_MEDIA_TYPES:
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _audiences(aud: Any) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _candidates(keys: Iterable[_Key], alg: str, kid: str | None) -> list[_Key]:
    return [k for k in keys if k.algorithm == alg and (kid is None or k.kid == kid)]


# --------------------------------------------------------------------------------------- sync layer

async def authenticate_with_expiry(dep: Any, token_type: Any, value: Any = None, *,
                                   impersonating: Any = None) -> tuple[Auth, float | None]:
    """One WebSocket `Authenticate` message -> (Auth, when a user identity expires in unix seconds).

    "User": verify the JWT; "Admin": the deployment's admin key (constant-time compare), optionally
    acting as `impersonating`; "None": log out."""
    if token_type == "None":
        return Auth(), None
    if token_type == "User":
        providers = getattr(dep, "auth_providers", None)
        if providers is None:
            raise _unauthenticated("NoAuthProvider", "No auth provider found matching the given token "
                                                     "(no providers configured).")
        user = await providers.verify_user(value)
        return Auth(identity=user.identity), user.expires_at
    if token_type == "Admin":
        expected = getattr(dep, "admin_key", None)
        if not (isinstance(value, str) and expected
                and hmac.compare_digest(value.encode("utf-8"), expected.encode("utf-8"))):
            raise _unauthenticated("BadAdminKey", "The provided admin key was invalid for this instance.")
        if impersonating is not None:
            return Auth(identity=impersonated_identity(impersonating), admin=True), None
        return Auth(admin=True), None
    raise EngineError("InvalidAuthenticate", f"Unknown tokenType {token_type!r}; expected \"User\", "
                                             "\"Admin\" or \"None\".")


async def authenticate(dep: Any, token_type: Any, value: Any = None, *, impersonating: Any = None) -> Auth:
    """`authenticate_with_expiry` without the expiry."""
    auth, _ = await authenticate_with_expiry(dep, token_type, value, impersonating=impersonating)
    return auth
