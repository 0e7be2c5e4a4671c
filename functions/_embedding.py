"""Embeddings for agent memory recall: one interface, an offline embedder and an HTTP service.

    embedder = embedder_from_env()
    vectors = await embedder.embed(["deployed the auth fix", "lunch plans"])   # 256 floats each

- `HashEmbedder` (the default, offline and deterministic; no model, no download): each word and
  each of its character trigrams is hashed into one of 256 signed buckets, weighted, and the
  vector is L2-normalized. Texts sharing words or word pieces ("deploy", "deployed") come out
  close; unrelated texts near orthogonal. It finds memories by their words, not by synonyms.
- `HttpEmbedder`: an OpenAI-compatible `POST {NOVA_EMBEDDINGS_URL}/embeddings` (`{model, input,
  dimensions: 256}`, `Authorization: Bearer $NOVA_EMBEDDINGS_API_KEY`), used when
  `NOVA_EMBEDDINGS_URL` is set; `NOVA_EMBEDDINGS_MODEL` (default `text-embedding-3-small`),
  `NOVA_EMBEDDINGS_TIMEOUT_SECONDS` (default 20). A service that answers another length than 256
  is refused (EMBEDDING_FAILED), never truncated. The key never appears in errors or logs.
Both answer 256 dimensions: the size of `agentMemory.by_embedding` in schema.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import urllib.error
import urllib.request
from typing import Protocol

from engine import env

from ._errors import app_error

DIMENSIONS = 256
URL_ENV = "NOVA_EMBEDDINGS_URL"
KEY_ENV = "NOVA_EMBEDDINGS_API_KEY"
MODEL_ENV = "NOVA_EMBEDDINGS_MODEL"
TIMEOUT_ENV = "NOVA_EMBEDDINGS_TIMEOUT_SECONDS"
DEFAULT_MODEL = "text-embedding-3-small"
HASH_MODEL = f"nova-hash-{DIMENSIONS}"
MAX_INPUTS = 64
_WORD = re.compile(r"\w+", re.UNICODE)


class Embedder(Protocol):
    model: str
    dimensions: int

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


def _bucket(feature: str) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return h % DIMENSIONS, (1.0 if (h >> 40) & 1 else -1.0)


class HashEmbedder:
    """Signed feature hashing of words and character trigrams (see the module docstring)."""

    model = HASH_MODEL
    dimensions = DIMENSIONS

    def vector(self, text: str) -> list[float]:
        out = [0.0] * DIMENSIONS
        for word in _WORD.findall(text.lower()):
            i, sign = _bucket("w:" + word)
            out[i] += sign
            padded = f"<{word}>"
            for k in range(len(padded) - 2):
                i, sign = _bucket("t:" + padded[k:k + 3])
                out[i] += 0.5 * sign
        norm = math.sqrt(sum(x * x for x in out))
        return [x / norm for x in out] if norm else out

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]


class HttpEmbedder:
    """An OpenAI-compatible embeddings endpoint (see the module docstring)."""

    dimensions = DIMENSIONS

    def __init__(self, base_url: str, api_key: str | None, model: str, timeout_s: float) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self._key = api_key
        self.model = model
        self.timeout_s = timeout_s

    def _post(self, texts: list[str]) -> list[list[float]]:
        body = json.dumps({"model": self.model, "input": texts, "dimensions": DIMENSIONS}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            e.close()  # the error carries the open response
            raise app_error("EMBEDDING_FAILED", f"The embeddings service answered HTTP {e.code}.") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or type(e).__name__
            raise app_error("EMBEDDING_FAILED", f"The embeddings service could not be reached ({reason}).") from None
        try:
            rows = sorted(answer["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError):
            raise app_error("EMBEDDING_FAILED", "The embeddings service's answer has no `data[].embedding`.") from None
        if len(vectors) != len(texts):
            raise app_error("EMBEDDING_FAILED", f"The embeddings service answered {len(vectors)} vectors for "
                            f"{len(texts)} texts.")
        for vec in vectors:
            if len(vec) != DIMENSIONS:
                raise app_error("EMBEDDING_FAILED", f"The embeddings service answered {len(vec)} dimensions; "
                                f"agent memory is indexed with {DIMENSIONS} (set a model that accepts "
                                "`dimensions`).")
        return vectors

    async def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), MAX_INPUTS):
            out += await asyncio.to_thread(self._post, texts[start:start + MAX_INPUTS])
        return out


def embedder_from_env() -> Embedder:
    url = env.get(URL_ENV)
    if not url:
        return HashEmbedder()
    try:
        timeout = float(env.get(TIMEOUT_ENV) or 20)
    except ValueError:
        raise app_error("CONFIG_INVALID", f"{TIMEOUT_ENV} must be a number of seconds.") from None
    return HttpEmbedder(url, env.get(KEY_ENV), env.get(MODEL_ENV) or DEFAULT_MODEL, timeout)
