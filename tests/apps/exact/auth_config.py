"""Auth for the `exact` app: a customJwt provider with a usable ES256 key (derived from a fixed, public
test secret, so tests can sign tokens), and one whose JWKS is malformed: as in Convex, it must not
stop the deployment from starting; only its own tokens fail. Test-only keys protect nothing."""

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://exact-tests.example.com"
BROKEN_ISSUER = "https://broken-jwks.example.com"
APPLICATION_ID = "exact-tests"
KEY_ID = "exact-k1"
_TEST_SECRET = 0x7E57C0DE5EED0F00DBADC0DE15600D5EC12E7C0DE0123456789ABCDEF0123457


def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(_TEST_SECRET, ec.SECP256R1())


def _b64url(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode().rstrip("=")


def _jwks() -> dict:
    numbers = signing_key().public_key().public_numbers()
    return {"keys": [{"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x), "y": _b64url(numbers.y),
                      "alg": "ES256", "use": "sig", "kid": KEY_ID}]}


BROKEN_JWKS = "data:application/json;base64," + base64.b64encode(b'{"keys": "not a list"').decode()

providers = [
    {"type": "customJwt", "issuer": ISSUER, "applicationID": APPLICATION_ID, "algorithm": "ES256",
     "jwks": "data:application/json;base64," + base64.b64encode(json.dumps(_jwks()).encode()).decode()},
    {"type": "customJwt", "issuer": BROKEN_ISSUER, "algorithm": "ES256", "jwks": BROKEN_JWKS},
]


def sign_token(subject: str = "user-1", *, kid: str | None = KEY_ID, issuer: str = ISSUER,
               iat: float | None = None, exp: float | None = None, **claims) -> str:
    """A token for `subject`, valid for an hour unless `iat` / `exp` say otherwise."""
    import jwt

    now = int(time.time())
    body = {"iss": issuer, "sub": subject, "aud": APPLICATION_ID, "iat": now if iat is None else iat,
            "exp": now + 3600 if exp is None else exp, **claims}
    return jwt.encode(body, signing_key(), algorithm="ES256", headers={"kid": kid} if kid else {})
