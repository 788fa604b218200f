"""Progress bars for long loops (tqdm on stderr; silent when `MEMDYN_NO_PROGRESS` is set)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm  # text bars everywhere (tqdm.auto wants ipywidgets in notebooks)

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterable[T]:
    """Wrap `iterable` in a progress bar labelled `desc`."""
    disable = bool(os.environ.get("MEMDYN_NO_PROGRESS"))
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, dynamic_ncols=True)


def close_progress_bars() -> None:
    """Clear every open bar, so that a message printed after an exception stands on its own line
    (an interrupted loop's bar would otherwise close only when its frame is collected)."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
