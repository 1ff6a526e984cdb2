"""Group removal at any fraction: validation, independent draws, the default draw unchanged
(about 3 s: the prepare and select steps of the smoke study)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from pipeline_fixtures import smoke_config
from pydantic import ValidationError

from tasks import schemas
from tasks.engine.artifacts import read_table
from tasks.engine.plan import build_plan
from tasks.engine.runner import run_node


def _removed(root: Path, cfg) -> torch.Tensor:
    plan = build_plan(cfg.model_dump(mode="json"))
    for node in ("prepare", "select"):
        run_node(root, cfg, node, plan=plan)
    sel = plan["select"]
    rem = read_table(
        root / sel.outputs["removed"], schemas.REMOVED, step="select", stamp=sel.stamp
    ).sort_values(["removal_id", "position"])
    m = int(rem["removal_id"].max()) + 1
    return torch.tensor(rem["train_index"].tolist()).view(m, -1)


def test_default_draw_is_the_seeded_permutation_prefix(tmp_path: Path) -> None:
    cfg = smoke_config(select__group_size=4)  # N = 100, M = 3
    removed = _removed(tmp_path, cfg)
    # the draw before select.draws existed: one permutation, M·k rows, no repeats at all
    ref = torch.randperm(100, generator=torch.Generator().manual_seed(0))[:12].view(3, 4)
    assert torch.equal(removed, ref)


def test_independent_sets_at_90_percent(tmp_path: Path) -> None:
    cfg = smoke_config(select__fraction=0.9, select__draws="independent", select__num_removals=4)
    removed = _removed(tmp_path, cfg)
    assert removed.shape == (4, 90)  # round(0.9 · 100) per set
    for row in removed:
        assert len(set(row.tolist())) == 90 and int(row.min()) >= 0 and int(row.max()) < 100
    assert len({tuple(sorted(r.tolist())) for r in removed}) == 4  # distinct draws
    # raising M keeps the earlier sets
    more_cfg = smoke_config(
        select__fraction=0.9, select__draws="independent", select__num_removals=6
    )
    more = _removed(tmp_path / "more", more_cfg)
    assert torch.equal(more[:4], removed)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"select__fraction": 0.6}, "select.draws='independent' lets the sets overlap"),
        ({"select__fraction": 0.5, "select__group_size": 2}, "either select.fraction or"),
        ({"select__fraction": 1.0, "select__draws": "independent"}, "less than 1"),
        ({"select__group_size": 100, "select__draws": "independent"}, "removes all 100"),
        ({"select__draws": "overlapping"}, "draws"),
    ],
)
def test_invalid_group_settings_name_the_field(overrides, needle) -> None:
    with pytest.raises(ValidationError, match=re.escape(needle)):
        smoke_config(**overrides)
