"""The DVC-versioned data directory: bundled scikit-learn sets exported as CSV, and read back.

``pbrf data export data/`` writes ``data/<name>.csv`` for ``breast_cancer``, ``digits`` and
``diabetes`` — feature columns ``x0..x{D−1}`` and a ``target`` column, floats in shortest
round-trip form — so the bytes, and the md5 that ``data.dvc`` records, are the same on every
machine. :func:`load_dataset_from_dir` reads a CSV back and builds exactly the split of
:func:`pbrf.data.load_dataset` (a test checks tensor equality for every data set).

Both paths end in :func:`pbrf.data.split_dataset`, so the split is one implementation. Data sets
with files of their own (MNIST, UCI files, PTB, …; ``pbrf data fetch`` puts them in the same
directory) are loaded from that directory by :func:`load_dataset_from_dir` as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pbrf.data import BUNDLED_TASKS as TASKS
from pbrf.data import Dataset, MalformedDataError, get_spec, load_dataset, raw_arrays, split_dataset
from pbrf.data.config import DataConfig
from pbrf.data.tables import numeric, read_csv
from tasks.artifacts import write_text


def export(directory: Path | str, names: tuple[str, ...] = tuple(TASKS)) -> list[Path]:
    """Write the bundled data sets as deterministic CSV files (atomically); return the paths."""
    directory = Path(directory)
    paths = []
    for name in names:
        x, t, _ = raw_arrays(name)
        df = pd.DataFrame(x, columns=[f"x{j}" for j in range(x.shape[1])])
        df["target"] = t.astype(np.float64)
        text = df.to_csv(index=False, float_format=_shortest, lineterminator="\n")
        paths.append(write_text(directory / f"{name}.csv", text))
    return paths


def _shortest(v: float) -> str:
    return repr(float(v))


def read_raw(directory: Path | str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, t, task)`` of ``directory/<name>.csv`` (as :func:`pbrf.data.raw_arrays` gives)."""
    if name not in TASKS:
        raise ValueError(
            f"only the bundled data sets {list(TASKS)} are exported as CSV, not {name!r}"
        )
    path = Path(directory) / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; create it with `pbrf data export {directory}` (offline)"
        )
    rows = read_csv(path)
    header = rows[0]
    if header[-1:] != ["target"]:
        raise MalformedDataError(path, "last column must be 'target'", row=1, column=len(header))
    # Python's float() parses the shortest repr exactly, independent of the pandas version
    values = numeric(path, rows[1:], len(header), first_row=2)
    x, target = values[:, :-1], values[:, -1]
    task = TASKS[name]
    return x, (target.astype(np.int64) if task == "multiclass" else target), task


def load_dataset_from_dir(cfg: DataConfig, directory: Path | str) -> Dataset:
    """The split of ``cfg`` from ``directory``: a bundled set from its exported CSV, any other
    set from its own files there (``directory`` takes the place of ``cfg.root``)."""
    if not get_spec(cfg.name).bundled:
        return load_dataset(cfg.model_copy(update={"root": str(directory)}))
    x, t, task = read_raw(directory, cfg.name)
    return split_dataset(x, t, task, cfg)
