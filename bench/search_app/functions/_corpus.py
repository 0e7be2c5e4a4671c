"""Deterministic corpora for bench/search.py (also imported by the benchmark for its baselines).

A document's body is 10 words drawn from a 30 000-word vocabulary with Zipf-like frequencies (the
word of rank r with weight 1/r^1.07, as in natural text), plus one "rare" word shared by exactly 10
documents whatever the corpus size. Words have fixed widths (w00042, r0000123), so no word is a
prefix of another and a one-word query (its last word is also a prefix) matches that word only. Vectors are embedding-like: a 16-dimensional
signal projected to 128 dimensions, plus noise.
"""

import random
from itertools import accumulate

import numpy as np

VOCABULARY = [f"w{i:05d}" for i in range(30_000)]
_CUM = list(accumulate(1.0 / (r + 1) ** 1.07 for r in range(len(VOCABULARY))))
DIMS = 128
LATENT = 16


def body(i: int, rare_groups: int) -> str:
    rng = random.Random(i)
    return " ".join(rng.choices(VOCABULARY, cum_weights=_CUM, k=10)) + f" {rare_word(i % rare_groups)}"


def rare_word(k: int) -> str:
    return f"r{k:07d}"


def tenant_of(i: int) -> str:
    return f"t{i % 20}"


def vectors(start: int, count: int) -> np.ndarray:
    """Rows start..start+count of the corpus (each block of 1 000 rows from its own seed)."""
    projection = np.random.default_rng(12345).standard_normal((LATENT, DIMS)).astype(np.float32)
    out = []
    for block in range(start // 1000, (start + count + 999) // 1000):
        rng = np.random.default_rng(block)
        z = rng.standard_normal((1000, LATENT)).astype(np.float32)
        out.append(z @ projection + 0.5 * rng.standard_normal((1000, DIMS)).astype(np.float32))
    rows = np.concatenate(out)
    first = start - (start // 1000) * 1000
    return rows[first:first + count]
