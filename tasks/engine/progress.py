"""Progress bars for long steps, as context managers around the library's callbacks.

``PBRF_PROGRESS=0/1`` forces bars off/on; by default tqdm shows them only on a terminal.
The library reports progress through plain callbacks (``progress(epoch, losses)`` for training,
``progress(step, total)`` for solvers); these wrappers turn them into bars and always close them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor
from tqdm import tqdm


def enabled() -> bool | None:
    flag = os.environ.get("PBRF_PROGRESS")
    if flag is None:
        return None  # tqdm: disable when stderr is not a TTY
    return flag.strip().lower() in ("1", "true", "yes", "on")


def _bar(desc: str, total: int | None, unit: str) -> tqdm:
    on = enabled()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if on is None else not on,
        mininterval=0.5,
    )


@contextmanager
def epochs(desc: str, total: int | None) -> Iterator:
    """A ``progress(epoch, mean_loss_per_model)`` callback shown as a bar of epochs."""
    bar = _bar(desc, total, "epoch")

    def callback(epoch: int, loss: Tensor) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach().float().mean()):.4g}", refresh=False)

    try:
        yield callback
    finally:
        bar.close()


@contextmanager
def steps(desc: str) -> Iterator:
    """A ``progress(step, total)`` callback shown as a bar of solver steps."""
    bar = _bar(desc, None, "it")

    def callback(step: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(step - bar.n)

    try:
        yield callback
    finally:
        bar.close()
