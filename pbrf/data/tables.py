"""Numeric tables from spreadsheets (.xls, .xlsx) and comma-separated text, checked cell by cell.

Every problem raises :class:`MalformedDataError` naming the file and the 1-based row and
column (a spreadsheet's header is row 1). Trailing empty rows and columns of a spreadsheet are
dropped (the published ``ENB2012_data.xlsx`` has them); an empty cell inside the table is an
error.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pbrf.data.errors import MalformedDataError

Cell = float | int | str | None


def read_xls(path: Path) -> list[list[Cell]]:
    """Cells of the first sheet of an Excel 97-2003 workbook (xlrd)."""
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), on_demand=True)
        try:
            sheet = book.sheet_by_index(0)
            rows = [
                [
                    _xls_cell(ctype, value)
                    for ctype, value in zip(sheet.row_types(r), sheet.row_values(r), strict=True)
                ]
                for r in range(sheet.nrows)
            ]
        finally:
            book.release_resources()
    except Exception as e:  # xlrd signals a corrupt file with many exception types
        raise MalformedDataError(path, f"cannot be read as an .xls workbook ({e})") from e
    return rows


def _xls_cell(ctype: int, value: object) -> Cell:
    import xlrd

    if ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    if ctype == xlrd.XL_CELL_NUMBER:
        return float(value)  # type: ignore[arg-type]
    if ctype == xlrd.XL_CELL_ERROR:
        return str(xlrd.error_text_from_code.get(value, "#ERROR"))  # type: ignore[call-overload]
    return str(value)


def read_xlsx(path: Path) -> list[list[Cell]]:
    """Cells of the first sheet of an Office Open XML workbook (openpyxl, values not formulas)."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            rows = [
                [_xlsx_cell(v) for v in row]
                for row in book.worksheets[0].iter_rows(values_only=True)
            ]
        finally:
            book.close()
    except Exception as e:  # openpyxl signals a corrupt file with many exception types
        raise MalformedDataError(path, f"cannot be read as an .xlsx workbook ({e})") from e
    return rows


def _xlsx_cell(value: object) -> Cell:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return str(value)


def read_csv(path: Path) -> list[list[str]]:
    """Rows of a comma-separated UTF-8 text file; trailing blank lines are dropped."""
    data = path.read_bytes()
    if not data.strip():
        raise MalformedDataError(path, "is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedDataError(
            path, "is not UTF-8 text", row=data[: e.start].count(b"\n") + 1
        ) from e
    rows = list(csv.reader(io.StringIO(text, newline="")))
    while rows and not rows[-1]:
        rows.pop()
    return rows


def trim(rows: Sequence[Sequence[Cell]]) -> list[list[Cell]]:
    """Drop trailing empty rows and columns; pad the remaining rows to one width."""
    rows = [list(r) for r in rows]
    while rows and all(c is None for c in rows[-1]):
        rows.pop()
    width = max((len(r) for r in rows), default=0)
    while width and all(len(r) < width or r[width - 1] is None for r in rows):
        width -= 1
    return [r[:width] + [None] * (width - len(r)) for r in rows]


def header_row(path: Path, rows: list[list[Cell]], expect: Sequence[str] | int) -> list[str]:
    """Check the header row (exact names, or just a count of text cells) and return it."""
    if not rows:
        raise MalformedDataError(path, "is empty")
    n = expect if isinstance(expect, int) else len(expect)
    header = rows[0]
    if len(header) != n:
        raise MalformedDataError(path, f"has {len(header)} columns, expected {n}", row=1)
    for j, cell in enumerate(header):
        ok = isinstance(cell, str) and (isinstance(expect, int) or cell.strip() == expect[j])
        if not ok:
            want = "a column name" if isinstance(expect, int) else repr(expect[j])
            raise MalformedDataError(path, f"header {cell!r}, expected {want}", row=1, column=j + 1)
    if len(rows) == 1:
        raise MalformedDataError(path, "has a header but no data rows")
    return [str(c).strip() for c in header]


def numeric(
    path: Path,
    rows: Sequence[Sequence[Cell]],
    n_cols: int,
    *,
    first_row: int = 1,
    parsers: dict[int, Callable[[str], float]] | None = None,
) -> np.ndarray:
    """``(len(rows), n_cols)`` float64 array of finite values; ``first_row`` numbers ``rows[0]``.

    Text cells are parsed as floats unless ``parsers`` maps their 0-based column to a parser
    (which raises ``ValueError`` on a bad value).
    """
    if not rows:
        raise MalformedDataError(path, "has no data rows")
    out = np.empty((len(rows), n_cols), dtype=np.float64)
    for i, row in enumerate(rows):
        r = first_row + i
        if len(row) != n_cols:
            col = min(len(row), n_cols) + 1
            raise MalformedDataError(
                path, f"has {len(row)} fields, expected {n_cols}", row=r, column=col
            )
        for j, cell in enumerate(row):
            parse = (parsers or {}).get(j, float)
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                raise MalformedDataError(path, "empty cell", row=r, column=j + 1)
            try:
                value = parse(cell) if isinstance(cell, str) else float(cell)
            except ValueError as e:
                raise MalformedDataError(
                    path, f"bad value {cell!r} ({e})", row=r, column=j + 1
                ) from e
            if not math.isfinite(value):
                raise MalformedDataError(path, f"non-finite value {cell!r}", row=r, column=j + 1)
            out[i, j] = value
    return out
