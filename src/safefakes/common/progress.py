"""Progress bars that stay quiet when stderr is not a terminal-like stream we want to fill."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr; ``SAFEFAKES_NO_PROGRESS=1`` turns bars off."""
    disable = os.environ.get("SAFEFAKES_NO_PROGRESS", "") not in ("", "0")
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, mininterval=1.0, dynamic_ncols=True)
