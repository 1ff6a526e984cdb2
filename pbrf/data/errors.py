"""Errors of the data loaders: a missing file, or a file that is not in the expected format."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from functools import partial
from pathlib import Path


def fetch_command(name: str, root: Path | str) -> str:
    """The shell command that downloads data set ``name`` into ``root``."""
    return f"pbrf data fetch {name} --root {shlex.quote(str(root))}"


class DataFilesMissingError(FileNotFoundError):
    """Files a data set needs are not under its root; the message names each one."""

    def __init__(self, name: str, root: Path | str, missing: Sequence[Path]) -> None:
        self.name, self.root, self.missing = name, Path(root), tuple(missing)
        listing = "\n".join(f"  {p}" for p in self.missing)
        super().__init__(
            f"data set {name!r} is missing {len(self.missing)} file(s) under {root}:\n{listing}\n"
            f"download them with `{fetch_command(name, root)}`"
        )

    def __str__(self) -> str:  # FileNotFoundError's own str() would prefix "[Errno None]"
        return str(self.args[0])

    def __reduce__(self):  # keep the attributes when pickled (a step in a worker process)
        return (type(self), (self.name, self.root, self.missing))


class MalformedDataError(ValueError):
    """A data file is truncated, empty or not in the expected format.

    ``row`` and ``column`` are 1-based positions in text and spreadsheet formats (``None`` for
    binary formats); the message always names the file.
    """

    def __init__(
        self,
        path: Path | str,
        problem: str,
        *,
        row: int | None = None,
        column: int | str | None = None,
    ) -> None:
        self.path, self.problem, self.row, self.column = Path(path), problem, row, column
        where = "".join(
            [
                f", row {row}" if row is not None else "",
                f", column {column}" if column is not None else "",
            ]
        )
        super().__init__(f"{path}{where}: {problem}")

    def __reduce__(self):  # keep the attributes when pickled (a step in a worker process)
        return (partial(type(self), row=self.row, column=self.column), (self.path, self.problem))
