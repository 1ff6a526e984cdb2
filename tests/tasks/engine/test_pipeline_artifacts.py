"""Artifact I/O: atomic writes, provenance checks, documented schemas."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tasks import schemas
from tasks.engine import artifacts
from tasks.engine.artifacts import (
    CorruptArtifactError,
    MissingArtifactError,
    StaleArtifactError,
    atomic_path,
    load_checkpoint,
    read_table,
    save_checkpoint,
    write_table,
)

SD = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}
ROWS = {"epoch": [0, 1], "objective": [1.0, 0.5]}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "done"
    assert _leftovers(tmp_path) == ["a.txt"]


def test_crash_inside_checkpoint_write_leaves_no_artifact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "theta.pt"

    def crashing_save(obj, f) -> None:
        f.write(b"PK\x03\x04 partial zip")
        raise OSError("disk full / process killed mid-write")

    monkeypatch.setattr(artifacts.torch, "save", crashing_save)
    with pytest.raises(OSError):
        save_checkpoint(path, SD, step="train_base", stamp="h")
    assert _leftovers(tmp_path) == []
    with pytest.raises(MissingArtifactError, match="Rerun step 'train_base'"):
        load_checkpoint(path, step="train_base", stamp="h")


def test_crash_inside_table_write_keeps_previous_version(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "history.parquet"
    write_table(path, schemas.BASE_HISTORY, ROWS, step="train_base", stamp="old")

    def crashing_write(table, where) -> None:
        Path(where).write_bytes(b"PAR1 trunc")
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts.pq, "write_table", crashing_write)
    with pytest.raises(KeyboardInterrupt):
        write_table(path, schemas.BASE_HISTORY, ROWS, step="train_base", stamp="new")
    assert _leftovers(tmp_path) == ["history.parquet"]
    old = read_table(path, schemas.BASE_HISTORY, step="train_base", stamp="old")
    assert old["objective"].tolist() == [1.0, 0.5]


def test_reader_refuses_truncated_files(tmp_path: Path) -> None:
    ck = save_checkpoint(tmp_path / "t.pt", SD, step="retrain", stamp="h")
    tab = write_table(
        tmp_path / "t.parquet", schemas.BASE_HISTORY, ROWS, step="train_base", stamp="h"
    )
    for p in (ck, tab):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # what a non-atomic kill leaves
    with pytest.raises(CorruptArtifactError, match=r"unreadable.*Rerun step 'retrain'"):
        load_checkpoint(ck, step="retrain", stamp="h")
    with pytest.raises(CorruptArtifactError, match="Rerun step 'train_base'"):
        read_table(tab, schemas.BASE_HISTORY, step="train_base", stamp="h")


def test_reader_refuses_other_config_step_or_schema(tmp_path: Path) -> None:
    ck = save_checkpoint(tmp_path / "t.pt", SD, step="influence", stamp="aaa", env={"threads": 3})
    with pytest.raises(StaleArtifactError, match=r"stamp aaa.*gives bbb.*'influence'"):
        load_checkpoint(ck, step="influence", stamp="bbb")
    with pytest.raises(CorruptArtifactError, match="written by step 'influence'"):
        load_checkpoint(ck, step="retrain", stamp="aaa")
    loaded = load_checkpoint(ck, step="influence", stamp="aaa")
    assert torch.equal(loaded.state_dict["w"], SD["w"]) and loaded.env == {"threads": 3}
    tab = write_table(
        tmp_path / "r.parquet", schemas.BASE_HISTORY, ROWS, step="train_base", stamp="aaa"
    )
    with pytest.raises(StaleArtifactError):
        read_table(tab, schemas.BASE_HISTORY, step="train_base", stamp="bbb")
    with pytest.raises(CorruptArtifactError, match="not a 'gaps' table"):
        read_table(tab, schemas.GAPS, step="train_base", stamp="aaa")
    assert pq.read_schema(tab).metadata[b"pbrf.stamp"] == b"aaa"


def test_every_schema_is_documented() -> None:
    names = [t.name for t in schemas.ALL_TABLES]
    assert len(names) == len(set(names))
    for t in schemas.ALL_TABLES:
        assert t.doc and all(f.metadata and f.metadata[b"doc"] for f in t.schema)
    assert "| `pearson_low` | double |" in schemas.describe()
