"""Checks a command makes before it writes anything: input artifacts and data files.

* :func:`check_inputs` — every input artifact of a node exists, is readable, was written by
  its producing node under the current config (the stamp: a Parquet footer, or a checkpoint
  memory-mapped without touching its tensors) and still has the bytes that node's manifest
  recorded (SHA-256). A failure is the same
  :class:`tasks.engine.artifacts.ArtifactError` the step itself would raise, before any file changes.
* :func:`check_data` — the data set's files exist (else the error lists them with the
  ``pbrf data fetch`` command) and, for files on disk, that they parse: non-finite values,
  ragged rows, empty or header-only files are reported with file, row and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.engine.artifacts import (
    FORMAT,
    CorruptArtifactError,
    MissingArtifactError,
    StaleArtifactError,
    table_provenance,
)
from tasks.engine.manifest import verify_output
from tasks.engine.plan import Node, Plan


def provenance(path: Path, step: str) -> tuple[Any, Any]:
    """``(step, stamp)`` recorded in artifact ``path``; :class:`ArtifactError` if unreadable."""
    if not path.is_file():
        raise MissingArtifactError(path, step, "missing")
    try:
        if path.suffix == ".parquet":
            meta = table_provenance(path)
            return meta.get("pbrf.step"), meta.get("pbrf.stamp")
        import torch

        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated zip, bad footer, ...
        raise CorruptArtifactError(path, step, f"unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("pbrf_artifact") != FORMAT:
        raise CorruptArtifactError(path, step, "not a pbrf checkpoint")
    return payload.get("step"), payload.get("stamp")


def check_inputs(root: Path | str, plan: Plan, node: Node) -> None:
    """Raise the :class:`ArtifactError` of the first input of ``node`` that cannot be used."""
    root = Path(root)
    for key, rel in node.inputs.items():
        src = plan[key.split("[", 1)[1][:-1]]
        path = root / rel
        step, stamp = provenance(path, src.step)
        verify_output(root, src, path)  # the bytes its producer recorded
        if step != src.step:
            raise CorruptArtifactError(
                path, src.step, f"written by step {step!r}, not {src.step!r}"
            )
        if stamp != src.stamp:
            raise StaleArtifactError(
                path,
                src.step,
                f"made with a different configuration (stamp {stamp}, the current config "
                f"gives {src.stamp})",
            )


def check_data(data_cfg: Any, *, content: bool = True) -> None:
    """The data set's files are present and (``content``) parse; bundled sets always pass."""
    from pbrf.data.load import check_files
    from pbrf.data.registry import get_spec

    if get_spec(data_cfg.name).bundled:
        return
    check_files(data_cfg.name, data_cfg.root)  # DataFilesMissingError naming every file
    if content:
        from pbrf.data import load_dataset

        load_dataset(data_cfg)  # MalformedDataError with file, row and column
