"""Atomic artifact I/O with provenance: every file records the step and config stamp that made it.

* Writes go to a temporary file in the target directory and are renamed into place
  (``os.replace`` is atomic on POSIX), so a crash or kill mid-write never leaves a file at the
  final path; an exception inside the writer removes the temporary file.
* Checkpoints (``.pt``) hold ``{"pbrf_artifact": 2, "step", "stamp", "state_dict", "meta",
  "env"}``; ``state_dict`` maps parameter names to tensors (stacked ``(M, *shape)`` for M
  removals); ``env`` records what can change the bits (threads, device, torch version).
* Parquet tables (schemas in :mod:`tasks.schemas`) keep the same provenance in their footer.
* Loaders refuse a missing, unreadable (e.g. truncated) or foreign-config artifact with an
  :class:`ArtifactError` that names the step to rerun. Content integrity (a flipped bit that
  still parses) is checked by the node manifests of :mod:`tasks.engine.manifest`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from tasks.schemas import SCHEMA_VERSION, TableSchema

FORMAT = 2
_TMP_SUFFIX = ".tmp"


class ArtifactError(RuntimeError):
    """An input artifact is missing, unreadable or from another configuration."""

    def __init__(self, path: Path | str, step: str, problem: str):
        self.path, self.step, self.problem = Path(path), step, problem
        super().__init__(
            f"{path}: {problem}. Rerun step '{step}' (pbrf run, or `pbrf step {step}` / "
            "`dvc repro`) to rebuild it."
        )

    def __reduce__(self):  # keep the attributes when pickled (a step in a worker process)
        return (type(self), (self.path, self.step, self.problem))


class MissingArtifactError(ArtifactError):
    pass


class CorruptArtifactError(ArtifactError):
    pass


class StaleArtifactError(ArtifactError):
    pass


class WriteError(OSError):
    """Writing an artifact failed (disk full, read-only, permissions); names the final path."""

    def __init__(self, path: Path | str, cause: OSError) -> None:
        self.cause = cause
        code = cause.errno if cause.errno is not None else _errno_in(str(cause))
        super().__init__(code, cause.strerror or str(cause), str(path))

    def __reduce__(self):  # keep the attributes when pickled (a step in a worker process)
        return (type(self), (self.filename, self.cause))


def _errno_in(text: str) -> int | None:
    """The ``[errno N]`` a library (pyarrow) puts in its message instead of ``OSError.errno``."""
    import re

    found = re.search(r"\[errno (\d+)\]", text, re.IGNORECASE)
    return int(found.group(1)) if found else None


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes 0600; artifacts are ordinary shareable files
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: Path | str) -> None:
    """Delete temporary files a killed writer left in ``directory`` (never a finished artifact)."""
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.glob(f".*{_TMP_SUFFIX}"):
            p.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    state_dict: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: Path | str,
    state_dict: Mapping[str, Tensor],
    *,
    step: str,
    stamp: str,
    meta: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state_dict`` (tensors moved to CPU, made contiguous) with its provenance."""
    payload = {
        "pbrf_artifact": FORMAT,
        "step": step,
        "stamp": stamp,
        "state_dict": {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()},
        "meta": dict(meta or {}),
        "env": dict(env or {}),
    }
    buffer = io.BytesIO()  # saving to a path would embed the (random) temp file name
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


def load_checkpoint(
    path: Path | str,
    *,
    step: str,
    stamp: str | None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Load a checkpoint written by ``step``; ``stamp=None`` skips the config check."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(path, step, "missing")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, wrong format, ...
        raise CorruptArtifactError(path, step, f"unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("pbrf_artifact") != FORMAT:
        raise CorruptArtifactError(path, step, "not a pbrf checkpoint")
    _check(path, step, payload.get("step"), payload.get("stamp"), stamp)
    return Checkpoint(payload["state_dict"], payload.get("meta", {}), payload.get("env", {}))


# --------------------------------------------------------------------------- tables


def write_table(
    path: Path | str,
    table: TableSchema,
    columns: Mapping[str, Any],
    *,
    step: str,
    stamp: str,
    env: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``columns`` (name → list/array) as Parquet with ``table``'s schema and provenance."""
    data = pa.Table.from_pydict(dict(columns), schema=table.schema)
    data = data.replace_schema_metadata(
        {
            "pbrf.schema": table.name,
            "pbrf.schema_version": SCHEMA_VERSION,
            "pbrf.step": step,
            "pbrf.stamp": stamp,
            "pbrf.env": json.dumps(dict(env or {}), sort_keys=True),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(data, tmp)
    return Path(path)


def read_table(
    path: Path | str, table: TableSchema, *, step: str, stamp: str | None
) -> pd.DataFrame:
    """Read a table written by ``step``, checking schema and (unless ``None``) the stamp."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(path, step, "missing")
    try:
        data = pq.read_table(path)
    except Exception as exc:
        raise CorruptArtifactError(path, step, f"unreadable ({type(exc).__name__}: {exc})") from exc
    meta = {k.decode(): v.decode() for k, v in (data.schema.metadata or {}).items()}
    if meta.get("pbrf.schema") != table.name or not data.schema.remove_metadata().equals(
        table.schema.remove_metadata()
    ):
        raise CorruptArtifactError(
            path, step, f"not a '{table.name}' table of schema version {SCHEMA_VERSION}"
        )
    _check(path, step, meta.get("pbrf.step"), meta.get("pbrf.stamp"), stamp)
    return data.to_pandas()


def table_provenance(path: Path | str) -> dict[str, str]:
    """The ``pbrf.*`` footer metadata of a Parquet artifact (cheap: reads only the footer)."""
    schema = pq.read_schema(path)
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def _check(path: Path, step: str, found_step: Any, found: Any, expected: str | None) -> None:
    if found_step != step:
        raise CorruptArtifactError(path, step, f"written by step {found_step!r}, not {step!r}")
    if expected is not None and found != expected:
        raise StaleArtifactError(
            path,
            step,
            f"made with a different configuration (stamp {found}, the current config "
            f"gives {expected})",
        )
