"""Readers of the UCI files in their published formats → raw ``(x, t)`` float64 arrays.

* ``Concrete_Data.xls`` — header row, 1030 rows × 9: eight inputs, compressive strength (MPa).
* ``ENB2012_data.xlsx`` — header ``X1..X8, Y1, Y2``, 768 rows; the target is the heating
  load ``Y1`` (``Y2``, the cooling load, is checked but unused).
* ``pima-indians-diabetes.data.csv`` — no header, 768 rows × 9: eight inputs, class 0/1.
* ``wdbc.data`` — no header, 569 rows: id, diagnosis ``M``/``B``, 30 features. The target is
  1 for benign and 0 for malignant, as in scikit-learn's ``breast_cancer``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pbrf.data.errors import MalformedDataError
from pbrf.data.tables import header_row, numeric, read_csv, read_xls, read_xlsx, trim

ENERGY_COLUMNS = (*(f"X{i}" for i in range(1, 9)), "Y1", "Y2")


def read_concrete(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = trim(read_xls(path))
    header_row(path, rows, 9)
    table = numeric(path, rows[1:], 9, first_row=2)
    return table[:, :8], table[:, 8]


def read_energy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = trim(read_xlsx(path))
    header_row(path, rows, ENERGY_COLUMNS)
    table = numeric(path, rows[1:], len(ENERGY_COLUMNS), first_row=2)
    return table[:, :8], table[:, 8]


def read_pima(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = numeric(path, read_csv(path), 9)
    bad = np.flatnonzero((table[:, 8] != 0) & (table[:, 8] != 1))
    if bad.size:
        r = int(bad[0])
        raise MalformedDataError(path, f"class {table[r, 8]} is not 0 or 1", row=r + 1, column=9)
    return table[:, :8], table[:, 8]


def _diagnosis(v: str) -> float:
    if v.strip() not in ("M", "B"):
        raise ValueError("diagnosis must be M or B")
    return 1.0 if v.strip() == "B" else 0.0


def _identifier(v: str) -> float:
    return float(int(v))


def read_wdbc(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = numeric(path, read_csv(path), 32, parsers={0: _identifier, 1: _diagnosis})
    return table[:, 2:], table[:, 1]


READERS = {
    "concrete": read_concrete,
    "energy": read_energy,
    "pima_diabetes": read_pima,
    "wdbc": read_wdbc,
}
