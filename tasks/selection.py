"""Step ``select`` (module ``selection``, to not shadow the standard library): the M removal sets and the test points every estimate is measured on."""

from __future__ import annotations

from pathlib import Path

import torch

from pbrf.config import StudyConfig
from tasks import schemas
from tasks.artifacts import load_checkpoint, remove_stale_temps, write_table
from tasks.fingerprint import config_hash
from tasks.layout import RunLayout


def choose(n: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct indices of ``range(n)``, a seeded permutation's prefix (CPU, int64)."""
    if count > n:
        raise ValueError(f"cannot choose {count} of {n} examples")
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:count]


def select(out: Path | str, cfg: StudyConfig) -> list[Path]:
    """Write ``select/removed.parquet`` (M × group_size training rows, without replacement,
    ``retrain.removal_seed``) and ``select/test_points.parquet`` (``influence.test_points`` test
    rows — all of them if there are fewer — seeded by ``influence.seed``)."""
    layout = RunLayout(out)
    remove_stale_temps(layout.removed.parent)
    meta = load_checkpoint(
        layout.dataset, step="prepare", config_hash=config_hash(cfg, "prepare")
    ).meta
    m, k = cfg.retrain.num_removals, cfg.retrain.group_size
    removed = choose(int(meta["n_train"]), m * k, cfg.retrain.removal_seed).view(m, k)
    n_test = int(meta["n_test"])
    test = choose(n_test, min(cfg.influence.test_points, n_test), cfg.influence.seed)
    h = config_hash(cfg, "select")
    write_table(
        layout.removed,
        schemas.REMOVED,
        {
            "removal_id": [i for i in range(m) for _ in range(k)],
            "position": [j for _ in range(m) for j in range(k)],
            "train_index": removed.flatten().tolist(),
        },
        step="select",
        config_hash=h,
    )
    write_table(
        layout.test_points,
        schemas.TEST_POINTS,
        {"position": list(range(test.numel())), "test_index": test.tolist()},
        step="select",
        config_hash=h,
    )
    return layout.outputs("select")
