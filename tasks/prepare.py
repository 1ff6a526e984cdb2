"""Step ``prepare``: the split, standardized data set as one tensor checkpoint."""

from __future__ import annotations

from pathlib import Path

from pbrf.config import StudyConfig
from tasks.artifacts import remove_stale_temps, save_checkpoint
from tasks.datafiles import load_dataset_from_dir
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout


def prepare(out: Path | str, cfg: StudyConfig, *, data_dir: Path | str | None = None) -> list[Path]:
    """Write ``prepare/dataset.pt``: x/t of the train and test split plus task metadata.

    With ``data_dir`` the raw data come from ``data_dir/<name>.csv`` (the DVC-tracked export);
    without, from scikit-learn's bundled copy — both give identical tensors.
    """
    from pbrf.data import load_dataset  # lazy: imports scikit-learn

    layout = RunLayout(out)
    remove_stale_temps(layout.dataset.parent)
    ds = load_dataset(cfg.data) if data_dir is None else load_dataset_from_dir(cfg.data, data_dir)
    save_checkpoint(
        layout.dataset,
        {"x_train": ds.x_train, "t_train": ds.t_train, "x_test": ds.x_test, "t_test": ds.t_test},
        step="prepare",
        config_hash=config_hash(cfg, "prepare"),
        meta={
            "name": ds.name,
            "task": ds.task,
            "default_loss": ds.default_loss,
            "output_dim": ds.output_dim,
            "n_train": ds.n_train,
            "n_test": int(ds.x_test.shape[0]),
            "source": "sklearn"
            if data_dir is None
            else f"{Path(data_dir).as_posix()}/{ds.name}.csv",
        },
    )
    return layout.outputs("prepare")
