"""engine.auth: JWT verification against Convex-style auth providers, the identity object, and the
sync layer's Authenticate handling (convex-protocol.md §5, §6).

Keys are generated here with `cryptography` and tokens signed with PyJWT. Custom-JWT providers read
their keys from data: URLs; OIDC providers are served over real HTTPS by a loopback server with a
self-signed certificate that only the AuthProviders under test trust. The last tests run a real
engine server with $CONVEX_AUTH_PROVIDERS and call it over HTTP and through the official npm
ConvexHttpClient.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import logging
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from engine.auth import (
    AuthProviders,
    VerifiedUser,
    authenticate,
    authenticate_with_expiry,
    impersonated_identity,
    parse_providers,
    token_expired_error,
)
from engine.deployment import Auth, Deployment
from engine.errors import EngineError

REPO_ROOT = Path(__file__).resolve().parent.parent
BASIC_APP = REPO_ROOT / "tests" / "apps" / "basic"
JS_DIR = REPO_ROOT / "tests" / "js"
ISSUER = "https://auth.example.com"


# --- keys and tokens -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(private_key: Any, kid: str | None, alg: str) -> dict:
    algorithm = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk["alg"] = alg
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def jwks(*keys: dict) -> dict:
    return {"keys": list(keys)}


def data_url(doc: dict, *, b64: bool = True) -> str:
    raw = json.dumps(doc).encode()
    if b64:
        return "data:application/json;base64," + base64.b64encode(raw).decode()
    return "data:application/json," + urllib.parse.quote(raw)


def sign(private_key: Any, claims: dict, *, alg: str = "RS256", kid: str | None = "k1") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, private_key, algorithm=alg, headers=headers)


def now() -> int:
    return int(time.time())


DROP: Any = object()  # claims(sub=DROP) leaves `sub` out


def claims(**extra: Any) -> dict:
    base = {"iss": ISSUER, "sub": "user|123", "iat": now(), "exp": now() + 600}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not DROP}


def custom_provider(key: Any, *, alg: str = "RS256", kid: str | None = "k1", **extra: Any) -> dict:
    provider = {"type": "customJwt", "issuer": ISSUER, "algorithm": alg,
                "jwks": data_url(jwks(public_jwk(key, kid, alg)))}
    provider.update(extra)
    return provider


async def expect_error(providers: AuthProviders, token: str, code: str, status: int = 401) -> EngineError:
    with pytest.raises(EngineError) as info:
        await providers.verify(token)
    err = info.value
    assert (err.code, err.status) == (code, status), err
    if len(token) > 3:
        assert token not in str(err) and token not in err.message
    return err


# --- custom JWT ----------------------------------------------------------------------------------


async def test_custom_jwt_identity_has_convex_shape(rsa_key, caplog):
    caplog.set_level(logging.DEBUG)
    providers = AuthProviders([custom_provider(rsa_key)])
    token = sign(rsa_key, claims(
        aud="app", nbf=now() - 10, jti="token-1", fva=[3, -1],
        email="ada@example.com", given_name="Ada", count=3, ratio=0.5, admin=True, nothing=None,
        roles=["a", {"deep": 1}], org={"id": "org_1", "meta": {"tier": 2}, "empty": {}},
    ))
    identity = await providers.verify(token)
    assert identity == {
        "tokenIdentifier": f"{ISSUER}|user|123",
        "subject": "user|123",
        "issuer": ISSUER,
        # custom JWTs: every non-registered claim is a custom claim, under its own name
        "email": "ada@example.com",
        "given_name": "Ada",
        "count": 3.0,
        "ratio": 0.5,
        "admin": True,
        "nothing": None,
        "roles": ["a", {"deep": 1.0}],
        "org.id": "org_1",
        "org.meta.tier": 2.0,
    }
    assert type(identity["count"]) is float and type(identity["org.meta.tier"]) is float
    assert type(identity["roles"][1]["deep"]) is float
    assert token not in caplog.text


async def test_custom_jwt_es256_from_percent_encoded_data_url(ec_key):
    provider = custom_provider(ec_key, alg="ES256")
    provider["jwks"] = data_url(jwks(public_jwk(ec_key, "k1", "ES256")), b64=False)
    providers = AuthProviders([provider])
    identity = await providers.verify(sign(ec_key, claims(), alg="ES256"))
    assert identity == {"tokenIdentifier": f"{ISSUER}|user|123", "subject": "user|123", "issuer": ISSUER}


async def test_verify_user_reports_expiry(rsa_key):
    exp = now() + 321
    user = await AuthProviders([custom_provider(rsa_key)]).verify_user(sign(rsa_key, claims(exp=exp)))
    assert isinstance(user, VerifiedUser) and user.expires_at == float(exp)


async def test_custom_jwt_needs_a_kid_naming_a_key_of_the_jwks(rsa_key, other_rsa_key):
    # Convex (biscuit's decode_with_jwks) picks the key by `kid`; a token without one is refused.
    provider = custom_provider(rsa_key)
    provider["jwks"] = data_url(jwks(public_jwk(other_rsa_key, "k0", "RS256"), public_jwk(rsa_key, "k1", "RS256")))
    providers = AuthProviders([provider])
    assert (await providers.verify(sign(rsa_key, claims(), kid="k1")))["subject"] == "user|123"
    err = await expect_error(providers, sign(rsa_key, claims(), kid=None), "InvalidAuthHeader")
    assert err.message == "Could not decode token. JWT may be missing a 'kid' (key ID) header."
    err = await expect_error(providers, sign(rsa_key, claims(), kid="nope"), "InvalidAuthHeader")
    assert err.message == ("Could not decode token. The JWT's 'kid' (key ID) header is 'nope', does this key "
                           "match any key in the provider's JWKS?")


async def test_issuer_matching_ignores_trailing_slashes_and_adds_https(rsa_key):
    providers = AuthProviders([custom_provider(rsa_key, issuer="auth.example.com/")])
    for iss in ("https://auth.example.com", "https://auth.example.com/", "auth.example.com"):
        identity = await providers.verify(sign(rsa_key, claims(iss=iss)))
        # tokenIdentifier and issuer keep the token's own spelling
        assert identity["tokenIdentifier"] == f"{iss}|user|123" and identity["issuer"] == iss
    await expect_error(providers, sign(rsa_key, claims(iss="http://auth.example.com")), "NoAuthProvider")


async def test_wrong_issuer_is_no_auth_provider(rsa_key):
    providers = AuthProviders([custom_provider(rsa_key)])
    err = await expect_error(providers, sign(rsa_key, claims(iss="https://evil.example.com")), "NoAuthProvider")
    assert "No auth provider found matching the given token" in err.message
    assert f"CustomJWT(issuer={ISSUER}, app_id=none)" in err.message
    err = await expect_error(AuthProviders([]), sign(rsa_key, claims()), "NoAuthProvider")
    assert "no providers configured" in err.message


async def test_application_id_must_be_in_aud(rsa_key):
    providers = AuthProviders([custom_provider(rsa_key, applicationID="my-app")])
    await expect_error(providers, sign(rsa_key, claims()), "NoAuthProvider")
    await expect_error(providers, sign(rsa_key, claims(aud="other-app")), "NoAuthProvider")
    assert (await providers.verify(sign(rsa_key, claims(aud="my-app"))))["subject"] == "user|123"
    assert (await providers.verify(sign(rsa_key, claims(aud=["x", "my-app"]))))["subject"] == "user|123"


async def test_first_matching_provider_wins(rsa_key, ec_key):
    # Same issuer twice: the first entry whose aud matches is used, even when a later one would verify.
    providers = AuthProviders([
        custom_provider(ec_key, alg="ES256", applicationID="a"),
        custom_provider(rsa_key, applicationID="b"),
    ])
    assert (await providers.verify(sign(rsa_key, claims(aud="b"))))["subject"] == "user|123"
    await expect_error(providers, sign(rsa_key, claims(aud=["a", "b"])), "InvalidAuthHeader")  # alg mismatch


async def test_expired_and_future_tokens_with_five_seconds_of_leeway(rsa_key):
    t = 1_800_000_000
    providers = AuthProviders([custom_provider(rsa_key)], wall_clock=lambda: t + 0.75)
    err = await expect_error(providers, sign(rsa_key, claims(iat=t - 100, exp=t - 60)), "InvalidAuthHeader")
    assert err.message == "Could not validate token: Token expired 60 seconds ago"
    # fractional exp: N is truncated, as chrono's num_seconds does
    err = await expect_error(providers, sign(rsa_key, claims(iat=t - 100, exp=t - 5.5)), "InvalidAuthHeader")
    assert err.message == "Could not validate token: Token expired 5 seconds ago"
    for exp in (t - 5, t - 2):  # within the leeway
        assert (await providers.verify(sign(rsa_key, claims(iat=t - 100, exp=exp))))["subject"] == "user|123"
    err = await expect_error(providers, sign(rsa_key, claims(iat=t, exp=t + 600, nbf=t + 120)), "InvalidAuthHeader")
    assert err.message == "Could not validate token: Token will be valid in 120 seconds"
    err = await expect_error(providers, sign(rsa_key, claims(iat=t + 120, exp=t + 600)), "InvalidAuthHeader")
    assert err.message == "Could not validate token: Token will be valid in 120 seconds"
    assert (await providers.verify(sign(rsa_key, claims(iat=t + 5, exp=t + 600))))["subject"] == "user|123"
    assert token_expired_error().code == "TokenExpired"
    assert token_expired_error().message == "Convex token identity expired"


async def test_bad_signatures(rsa_key, other_rsa_key):
    providers = AuthProviders([custom_provider(rsa_key)])
    # signed by another key that claims the trusted key's id: Convex's decode error names the kid
    err = await expect_error(providers, sign(other_rsa_key, claims()), "InvalidAuthHeader")
    assert "The JWT's 'kid' (key ID) header is 'k1'" in err.message
    # a valid token whose payload was swapped
    good = sign(rsa_key, claims())
    head, _, sig = good.split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims(sub="admin")).encode()).rstrip(b"=").decode()
    await expect_error(providers, f"{head}.{forged_payload}.{sig}", "InvalidAuthHeader")


async def test_malformed_tokens_and_missing_claims(rsa_key, ec_key):
    providers = AuthProviders([custom_provider(rsa_key)])
    for token in ("abc", "a.b.c", "", "x" * 10):
        await expect_error(providers, token, "InvalidAuthHeader")
    with pytest.raises(EngineError) as info:
        await providers.verify(None)
    assert info.value.code == "InvalidAuthHeader"
    await expect_error(providers, sign(rsa_key, claims(sub=DROP)), "InvalidAuthHeader")
    await expect_error(providers, sign(rsa_key, claims(exp=DROP)), "InvalidAuthHeader")
    await expect_error(providers, sign(rsa_key, claims(iss=DROP)), "InvalidAuthHeader")
    await expect_error(providers, sign(rsa_key, claims(sub=5)), "InvalidAuthHeader")
    # right issuer, wrong algorithm: an ES256 token for an RS256 provider, and an unsigned one
    await expect_error(providers, sign(ec_key, claims(), alg="ES256"), "InvalidAuthHeader")
    await expect_error(providers, jwt.encode(claims(), None, algorithm="none"), "InvalidAuthHeader")
    hs = jwt.encode(claims(), "a-very-long-shared-secret-of-32-bytes!", algorithm="HS256", headers={"kid": "k1"})
    await expect_error(providers, hs, "InvalidAuthHeader")


def test_provider_config_validation(rsa_key):
    good = custom_provider(rsa_key)
    assert [p.kind for p in parse_providers([good, {"domain": "https://x.example.com", "applicationID": "a"}])] == [
        "customJwt", "oidc"]
    assert parse_providers({"providers": [good]})[0].issuer == ISSUER
    assert parse_providers([{"domain": "x.example.com/", "applicationID": "a"}])[0].issuer == "https://x.example.com"
    bad = [
        [{**good, "algorithm": "HS256"}],
        [{**good, "jwks": ""}],
        [{**good, "issuer": ""}],
        [{"domain": "https://x.example.com"}],
        [{"type": "saml", "issuer": ISSUER}],
        ["not an object"],
        "not a list",
    ]
    for config in bad:
        with pytest.raises(EngineError) as info:
            parse_providers(config)
        assert info.value.code == "InvalidAuthConfig", config


async def test_an_unusable_jwks_fails_only_its_tokens_at_validation(rsa_key):
    """As in Convex, nothing about a key set is checked at start-up: a malformed or unreachable JWKS
    does not stop the deployment; its provider's tokens fail with Convex's texts."""
    good = custom_provider(rsa_key)
    token = sign(rsa_key, claims())
    cases = {
        "data:application/json;base64,!!!": "Invalid JWKS data URL. Check that the data URL is properly "
                                            "formatted and contains valid base64-encoded JSON.",
        data_url({"nokeys": 1}): f"Invalid JWKS response body from '{data_url({'nokeys': 1})}'. The response is "
                                 "not valid JSON or doesn't match the expected JWKS format.",
        "ftp://x/jwks": "Could not fetch JWKS from URL 'ftp://x/jwks': unsupported URL scheme. Check that the URL "
                        "is correct and accessible.",
    }
    for jwks_url, message in cases.items():
        providers = AuthProviders(parse_providers([{**good, "jwks": jwks_url}]))
        err = await expect_error(providers, token, "InvalidAuthHeader")
        assert err.message == message
    # Port 9 on loopback: nothing listens there.
    unreachable = AuthProviders(parse_providers([{**good, "jwks": "http://127.0.0.1:9/jwks.json"}]), http_timeout=2)
    err = await expect_error(unreachable, token, "InvalidAuthHeader")
    assert err.message.startswith("Could not fetch JWKS from URL 'http://127.0.0.1:9/jwks.json': ")
    assert err.message.endswith(". Check that the URL is correct and accessible.")


def test_env_var_and_app_auth_config_are_combined(tmp_path, rsa_key):
    app = tmp_path / "app"
    (app / "functions").mkdir(parents=True)
    (app / "auth_config.py").write_text(
        "providers = [{'domain': 'https://oidc.example.com', 'applicationID': 'web'}]\n")
    from engine.loader import load_app

    env = {"CONVEX_AUTH_PROVIDERS": json.dumps([custom_provider(rsa_key)])}
    providers = AuthProviders.load(load_app(app), environ=env)
    assert [(p.kind, p.issuer) for p in providers.providers] == [
        ("oidc", "https://oidc.example.com"), ("customJwt", ISSUER)]
    assert AuthProviders.load(None, environ={}).providers == ()
    with pytest.raises(EngineError) as info:
        AuthProviders.load(None, environ={"CONVEX_AUTH_PROVIDERS": "[{"})
    assert info.value.code == "InvalidAuthConfig"


# --- OIDC over HTTPS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict:
    """A self-signed certificate for 127.0.0.1 / localhost, and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engine-auth-test")])
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return {"server": server, "client": ssl.create_default_context(cadata=cert_pem.decode())}


class Site:
    """A loopback HTTPS server answering GETs from `routes` (path -> (status, content type, JSON,
    extra headers)) and counting hits per path."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.routes: dict[str, tuple[int, str, Any, dict[str, str]]] = {}
        self.hits: Counter[str] = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                site.hits[self.path] += 1
                status, content_type, doc, headers = site.routes.get(self.path, (404, "text/plain", None, {}))
                body = json.dumps(doc).encode() if doc is not None else b"not found"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, path: str, doc: Any, *, status: int = 200, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.routes[path] = (status, content_type, doc, headers or {})

    def discovery(self, *, issuer: str | None = None, jwks_path: str = "/jwks.json") -> None:
        self.serve("/.well-known/openid-configuration",
                   {"issuer": issuer or self.url, "jwks_uri": self.url + jwks_path})


@pytest.fixture
def site(tls) -> Iterator[Site]:
    s = Site(tls["server"])
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join()


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def oidc(site: Site, tls: dict, **options: Any) -> AuthProviders:
    return AuthProviders([{"domain": site.url, "applicationID": "web"}], ssl_context=tls["client"], **options)


async def test_oidc_eddsa_identity_maps_standard_claims(site, tls, ed_key, caplog):
    caplog.set_level(logging.DEBUG)
    site.discovery()
    site.serve("/jwks.json", jwks(public_jwk(ed_key, "ed1", "EdDSA")))
    providers = oidc(site, tls)
    token = sign(ed_key, {
        "iss": site.url, "sub": "u1", "aud": "web", "iat": now(), "exp": now() + 600, "nbf": now(),
        "jti": "j", "azp": "web", "nonce": "n", "auth_time": now(), "fva": [1, 2],
        "name": "Ada Lovelace", "name#fr": "Ada", "given_name": "Ada", "family_name": "Lovelace",
        "middle_name": "B", "nickname": "ada", "preferred_username": "ada_l",
        "profile": "https://p.example/ada", "picture": "https://p.example/ada.png", "website": "https://ada.example",
        "email": "ada@example.com", "email_verified": True, "gender": "female", "birthdate": "1815-12-10",
        "zoneinfo": "Europe/London", "locale": "en-GB", "phone_number": "+44 1", "phone_number_verified": False,
        "address": {"formatted": "12 St James's Square, London", "country": "UK"}, "updated_at": 1700000000,
        "org_role": "admin", "count": 3, "org": {"id": "o1"},
    }, alg="EdDSA", kid="ed1")
    identity = await providers.verify(token)
    assert identity == {
        "tokenIdentifier": f"{site.url}|u1",
        "subject": "u1",
        "issuer": site.url,
        "name": "Ada Lovelace",
        "givenName": "Ada",
        "familyName": "Lovelace",
        "nickname": "ada",
        "preferredUsername": "ada_l",
        "profileUrl": "https://p.example/ada",
        "pictureUrl": "https://p.example/ada.png",
        "websiteUrl": "https://ada.example",
        "email": "ada@example.com",
        "emailVerified": True,
        "gender": "female",
        "birthday": "1815-12-10",
        "timezone": "Europe/London",
        "language": "en-GB",
        "phoneNumber": "+44 1",
        "phoneNumberVerified": False,
        "address": "12 St James's Square, London",
        "updatedAt": "2023-11-14T22:13:20+00:00",
        # other claims are custom claims (OIDC keeps nested objects as they are)
        "org_role": "admin",
        "count": 3.0,
        "org": {"id": "o1"},
    }
    assert type(identity["count"]) is float
    assert token not in caplog.text


async def test_oidc_rs256_requires_application_id_in_aud(site, tls, rsa_key):
    site.discovery(issuer=site.url + "/")  # discovery issuers may carry the trailing slash
    site.serve("/jwks.json", jwks(public_jwk(rsa_key, "k1", "RS256")))
    providers = oidc(site, tls)
    base = {"iss": site.url + "/", "sub": "u2", "iat": now(), "exp": now() + 600}
    assert (await providers.verify(sign(rsa_key, {**base, "aud": "web"})))["subject"] == "u2"
    assert (await providers.verify(sign(rsa_key, {**base, "aud": ["web"]})))["subject"] == "u2"
    await expect_error(providers, sign(rsa_key, {**base, "aud": "api"}), "NoAuthProvider")
    err = await expect_error(providers, sign(rsa_key, {**base, "aud": "web", "iat": None}), "InvalidAuthHeader")
    assert err.message == "Could not parse as OIDC ID token. Token might not be an OIDC-compliant JWT."
    unverified = ("Could not verify OIDC token claim. Check that the token signature is valid and the token "
                  "hasn't expired.")
    # Convex's openidconnect verifier refuses other audiences beside the applicationID ...
    err = await expect_error(providers, sign(rsa_key, {**base, "aud": ["web", "api"]}), "Unauthenticated")
    assert err.message == unverified
    # ... allows no leeway on exp ...
    err = await expect_error(providers, sign(rsa_key, {**base, "aud": "web", "exp": now() - 2}), "Unauthenticated")
    assert err.message == unverified
    # ... and takes RS256 and EdDSA only
    await expect_error(providers, jwt.encode({**base, "aud": "web"}, ec.generate_private_key(ec.SECP256R1()),
                                             algorithm="ES256", headers={"kid": "k1"}), "Unauthenticated")


async def test_keys_are_cached_and_refetched_for_unknown_kid(site, tls, rsa_key, other_rsa_key):
    site.discovery()
    site.serve("/jwks.json", jwks(public_jwk(rsa_key, "k1", "RS256")))
    clock = FakeClock()
    providers = oidc(site, tls, clock=clock, min_refetch_interval=10.0)
    base = {"iss": site.url, "sub": "u", "aud": "web", "iat": now(), "exp": now() + 600}
    for _ in range(3):
        await providers.verify(sign(rsa_key, base, kid="k1"))
    assert (site.hits["/.well-known/openid-configuration"], site.hits["/jwks.json"]) == (1, 1)

    # The provider rotates in a new key. Right after a fetch, an unknown kid does not refetch ...
    site.serve("/jwks.json", jwks(public_jwk(rsa_key, "k1", "RS256"), public_jwk(other_rsa_key, "k2", "RS256")))
    rotated = sign(other_rsa_key, base, kid="k2")
    clock.t += 1
    await expect_error(providers, rotated, "Unauthenticated")
    assert site.hits["/jwks.json"] == 1
    # ... but once the minimum interval has passed it does, once, and the new key verifies.
    clock.t += 10
    assert (await providers.verify(rotated))["subject"] == "u"
    assert (await providers.verify(rotated))["subject"] == "u"
    assert site.hits["/jwks.json"] == 2
    # A kid that exists nowhere is refetched at most once per interval.
    await expect_error(providers, sign(other_rsa_key, base, kid="k9"), "Unauthenticated")
    await expect_error(providers, sign(other_rsa_key, base, kid="k9"), "Unauthenticated")
    assert site.hits["/jwks.json"] == 2


async def test_cache_respects_max_age_and_keeps_stale_keys_when_refetch_fails(site, tls, rsa_key):
    site.discovery()
    site.serve("/jwks.json", jwks(public_jwk(rsa_key, "k1", "RS256")), headers={"Cache-Control": "public, max-age=60"})
    clock = FakeClock()
    providers = oidc(site, tls, clock=clock, cache_ttl=3600.0)
    token = sign(rsa_key, {"iss": site.url, "sub": "u", "aud": "web", "iat": now(), "exp": now() + 600})
    await providers.verify(token)
    clock.t += 59
    await providers.verify(token)
    assert site.hits["/jwks.json"] == 1
    clock.t += 2
    await providers.verify(token)
    assert site.hits["/jwks.json"] == 2
    # The JWKS endpoint breaks: the expired cached copy still verifies rather than locking users out.
    site.serve("/jwks.json", None, status=500)
    clock.t += 61
    assert (await providers.verify(token))["subject"] == "u"
    assert site.hits["/jwks.json"] == 3


async def test_https_jwks_for_custom_jwt_checks_content_type(site, tls, ec_key):
    site.serve("/keys", jwks(public_jwk(ec_key, "e1", "ES256")), content_type="application/jwk-set+json")
    site.serve("/html-keys", jwks(public_jwk(ec_key, "e1", "ES256")), content_type="text/html")
    token = sign(ec_key, claims(), alg="ES256", kid="e1")
    ok = AuthProviders([{"type": "customJwt", "issuer": ISSUER, "jwks": site.url + "/keys", "algorithm": "ES256"}],
                       ssl_context=tls["client"])
    assert (await ok.verify(token))["subject"] == "user|123"
    bad = AuthProviders([{"type": "customJwt", "issuer": ISSUER, "jwks": site.url + "/html-keys",
                          "algorithm": "ES256"}], ssl_context=tls["client"])
    err = await expect_error(bad, token, "InvalidAuthHeader")
    assert err.message == (f"Invalid Content-Type 'text/html' when fetching JWKS from '{site.url}/html-keys'. "
                           "Expected 'application/json' or 'application/jwk-set+json'.")
    missing = AuthProviders([{"type": "customJwt", "issuer": ISSUER, "jwks": site.url + "/nothing",
                              "algorithm": "ES256"}], ssl_context=tls["client"])
    assert (await expect_error(missing, token, "InvalidAuthHeader")).message == (
        f"Could not fetch JWKS from URL '{site.url}/nothing': HTTP 404 Not Found. Check that the URL is correct "
        "and accessible.")


async def test_discovery_failures(site, tls, rsa_key):
    token = sign(rsa_key, {"iss": site.url, "sub": "u", "aud": "web", "iat": now(), "exp": now() + 600})
    failed = f"Auth provider discovery of {site.url} failed"
    # The certificate is not trusted by default.
    err = await expect_error(AuthProviders([{"domain": site.url, "applicationID": "web"}]), token,
                             "AuthProviderDiscoveryFailed", 400)
    assert err.message == failed
    err = await expect_error(oidc(site, tls), token, "AuthProviderDiscoveryFailed", 400)  # 404
    assert err.message == failed
    site.discovery(issuer="https://someone-else.example.com")
    assert (await expect_error(oidc(site, tls), token, "AuthProviderDiscoveryFailed", 400)).message == failed


# --- the sync layer and the deployment -----------------------------------------------------------


class _Dep:
    def __init__(self, providers: AuthProviders, admin_key: str | None = "secret-admin-key") -> None:
        self.auth_providers = providers
        self.admin_key = admin_key


async def test_authenticate_token_types(rsa_key):
    dep = _Dep(AuthProviders([custom_provider(rsa_key)]))
    exp = now() + 100
    token = sign(rsa_key, claims(exp=exp))
    assert await authenticate(dep, "None") == Auth()
    auth, expires = await authenticate_with_expiry(dep, "User", token)
    assert auth == Auth(identity={"tokenIdentifier": f"{ISSUER}|user|123", "subject": "user|123",
                                  "issuer": ISSUER}) and expires == exp
    assert await authenticate(dep, "Admin", "secret-admin-key") == Auth(admin=True)
    acting = await authenticate(dep, "Admin", "secret-admin-key", impersonating={
        "subject": "s", "issuer": "https://i.example", "email": "e@x", "customClaims": {"role": "r", "n": 1}})
    assert acting == Auth(admin=True, identity={"tokenIdentifier": "https://i.example|s", "subject": "s",
                                                "issuer": "https://i.example", "email": "e@x", "role": "r",
                                                "n": 1.0})
    for bad_key in ("wrong", "", None, "secret-admin-key "):
        with pytest.raises(EngineError) as info:
            await authenticate(dep, "Admin", bad_key)
        assert (info.value.code, info.value.status) == ("BadAdminKey", 401)
    with pytest.raises(EngineError) as info:
        await authenticate(_Dep(dep.auth_providers, admin_key=None), "Admin", "secret-admin-key")
    assert info.value.code == "BadAdminKey"
    with pytest.raises(EngineError) as info:
        await authenticate(dep, "User", sign(rsa_key, claims(exp=now() - 60)))
    assert info.value.code == "InvalidAuthHeader" and "Token expired" in info.value.message
    with pytest.raises(EngineError) as info:
        await authenticate(dep, "Bogus", "x")
    assert info.value.code == "InvalidAuthenticate"


def test_impersonated_identity_needs_a_token_identifier():
    assert impersonated_identity({"tokenIdentifier": "t", "n": 2}) == {"tokenIdentifier": "t", "n": 2.0}
    for bad in ({"subject": "s"}, "x", {"issuer": 1, "subject": "s"}):
        with pytest.raises(EngineError) as info:
            impersonated_identity(bad)
        assert info.value.code == "InvalidImpersonation"


async def test_deployment_verifies_tokens_and_functions_see_the_identity(rsa_key, monkeypatch):
    monkeypatch.setenv("CONVEX_AUTH_PROVIDERS", json.dumps([custom_provider(rsa_key)]))
    dep = await Deployment.open(BASIC_APP, ":memory:", admin_key="secret-admin-key")
    try:
        assert [p.issuer for p in dep.auth_providers.providers] == [ISSUER]
        token = sign(rsa_key, claims(org={"id": "o"}))
        identity = await dep.verify_token(token)
        assert identity["org.id"] == "o"
        auth = await authenticate(dep, "User", token)
        for path, kind in (("whoami:whoami", "query"), ("whoami:whoamiAction", "action"),
                           ("whoami:whoamiViaQuery", "action")):
            outcome = await dep.call(path, {}, kind=kind, auth=auth)
            assert outcome.success and outcome.value == identity, outcome
            anonymous = await dep.call(path, {}, kind=kind, auth=Auth())
            assert anonymous.success and anonymous.value is None
    finally:
        await dep.close()


# --- a real server -------------------------------------------------------------------------------

_NODE_SCRIPT = """
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
const client = new ConvexHttpClient(process.env.ENGINE_URL);
const out = {};
out.anonymous = await client.query(anyApi.whoami.whoami, {});
client.setAuth(process.env.ENGINE_TOKEN);
out.user = await client.query(anyApi.whoami.whoami, {});
out.viaAction = await client.action(anyApi.whoami.whoamiViaQuery, {});
client.setAuth(process.env.ENGINE_BAD_TOKEN);
try {
  await client.query(anyApi.whoami.whoami, {});
  out.bad = null;
} catch (e) {
  out.bad = String(e.message);
}
console.log(JSON.stringify(out));
"""


@pytest.mark.slow
def test_server_authenticates_bearer_tokens_end_to_end(server_factory, rsa_key, other_rsa_key):
    provider = custom_provider(rsa_key, applicationID="web")
    server = server_factory("basic", extra_env={"CONVEX_AUTH_PROVIDERS": json.dumps([provider])})
    token = sign(rsa_key, claims(aud="web", name="Ada", org={"id": "o1", "tier": 2}))
    expected = {"tokenIdentifier": f"{ISSUER}|user|123", "subject": "user|123", "issuer": ISSUER,
                "name": "Ada", "org.id": "o1", "org.tier": 2}

    def query(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{server.url}/api/query", headers=headers, timeout=10,
                          json={"path": "whoami:whoami", "args": {}, "format": "convex_encoded_json"})

    response = query({"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json() == {"status": "success", "value": expected}
    assert query({}).json() == {"status": "success", "value": None}
    for bad, code in ((sign(rsa_key, claims(aud="web", exp=now() - 60)), "InvalidAuthHeader"),
                      (sign(other_rsa_key, claims(aud="web")), "InvalidAuthHeader"),
                      (sign(rsa_key, claims(aud="mobile")), "NoAuthProvider"),
                      ("not-a-jwt", "InvalidAuthHeader")):
        response = query({"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401 and response.json()["code"] == code, response.text
        assert bad not in response.text
    assert bad not in server.log_tail() and token not in server.log_tail()

    # The official JS client's setAuth sends the same header.
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "convex").is_dir():
        pytest.fail("node and tests/js/node_modules are needed: run `tests/run` (or `npm ci --prefix tests/js`)")
    done = subprocess.run(
        ["node", "--input-type=module", "-e", _NODE_SCRIPT], cwd=JS_DIR, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "ENGINE_URL": server.url, "ENGINE_TOKEN": token,
             "ENGINE_BAD_TOKEN": sign(other_rsa_key, claims(aud="web"))},
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = json.loads(done.stdout)
    assert out["anonymous"] is None
    assert out["user"] == expected and out["viaAction"] == expected
    assert out["bad"] is not None and "does this key match any key in the provider's JWKS?" in out["bad"]
