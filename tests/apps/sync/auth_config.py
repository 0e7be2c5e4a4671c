"""Auth for the sync test app: one customJwt provider whose ES256 key is derived from a fixed,
public test secret, so tests can sign tokens for it (`sign_token`) with no setup. Test-only: a key
whose secret is in the source protects nothing."""

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://sync-tests.example.com"
APPLICATION_ID = "sync-tests"
KEY_ID = "sync-k1"
_TEST_SECRET = 0x5C0FFEE5EED0F00DBADC0DE15600D5EC12E7C0DE0123456789ABCDEF01234567


def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(_TEST_SECRET, ec.SECP256R1())


def _b64url(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode().rstrip("=")


def _jwks() -> dict:
    numbers = signing_key().public_key().public_numbers()
    return {"keys": [{"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x), "y": _b64url(numbers.y),
                      "alg": "ES256", "use": "sig", "kid": KEY_ID}]}


providers = [{
    "type": "customJwt",
    "issuer": ISSUER,
    "applicationID": APPLICATION_ID,
    "algorithm": "ES256",
    "jwks": "data:application/json;base64," + base64.b64encode(json.dumps(_jwks()).encode()).decode(),
}]


def sign_token(subject: str = "user-1", *, ttl: float = 3600, **claims) -> str:
    """A valid token for `subject` (extra claims are added as they are)."""
    import jwt

    now = int(time.time())
    body = {"iss": ISSUER, "sub": subject, "aud": APPLICATION_ID, "iat": now, "exp": int(now + ttl), **claims}
    return jwt.encode(body, signing_key(), algorithm="ES256", headers={"kid": KEY_ID})
