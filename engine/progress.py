"""Progress bars (tqdm) for long operations: index backfills, snapshot export and import.

    with progress("Index \"tasks.by_status\"", unit=" docs") as bar:
        for doc in docs:
            bar.update(1)

Shown on stderr only when it is a terminal (`disable=None`) and only once the work has taken more
than a second (`delay`), so short operations, logs and piped output stay clean.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress"]


def progress(desc: str, *, total: int | None = None, unit: str = " items", unit_scale: bool = False) -> Any:
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=None, delay=1.0,
                file=sys.stderr, leave=False, dynamic_ncols=True)
