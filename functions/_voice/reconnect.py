"""Back-off between connection attempts: exponential, capped, with jitter.

    backoff = Backoff(initial=0.5, factor=2, maximum=30, jitter=0.2)
    backoff.delay(1) -> 0.4..0.5 s, delay(2) -> 0.8..1.0, ... never above `maximum`

Jitter scales each delay by a uniform factor in [1 - jitter, 1], so workers that lost the same server
at the same moment do not all come back at the same instant. `rng` is injectable for tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial or not 0 <= self.jitter < 1:
            raise ValueError(f"bad back-off: {self!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th consecutive failure (1-based)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        # The exponent is capped so a worker retrying for days does not overflow a float.
        base = min(self.maximum, self.initial * self.factor ** min(attempt - 1, 64))
        return base * (1 - self.jitter * self.rng.random())
