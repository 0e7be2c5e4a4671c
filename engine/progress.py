"""Progress bars (tqdm) for long operations: index backfills, snapshot export and import.

    with progress("Index \"tasks.by_status\"", unit=" docs") as bar:
        for doc in docs:
            bar.update(1)

Shown on stderr only when it is a terminal (`disable=None`) and only once the work has taken more
than a second (`delay`; tqdm's own `TQDM_DELAY` environment variable sets another, `TQDM_DELAY=0`
shows every bar at once), so short operations, logs and piped output stay clean.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress"]


def progress(desc: str, *, total: int | None = None, unit: str = " items", unit_scale: bool = False) -> Any:
    try:
        delay = float(os.environ.get("TQDM_DELAY", "1"))
    except ValueError:
        delay = 1.0
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=None, delay=delay,
                file=sys.stderr, leave=False, dynamic_ncols=True)
