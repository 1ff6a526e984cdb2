"""``pbrf sweep NAME --tune-lr``: the learning rate chosen at every grid point, as the paper did.

Appendix E.3/E.4 chose each model's learning rate by a validation sweep over {1, 0.3, 0.1, 0.03,
0.01, 0.003, 0.001}; a Figure-5 point is a different model (another width, depth, weight decay
or number of epochs), so the sweep runs :func:`tasks.sweeps.tune.tune_lr` at every point and
the point trains at the rate it chose (:attr:`pbrf.study.sweeps.SweepSpec.lr`).

Validation training depends only on what the registry's ``prepare`` and ``train_base`` steps
read (the rate left out), so points that differ elsewhere (damping, the PBRF's epochs, the
removal fraction) share one tuning. Each tuning is kept in
``<sweep>/tune/<key>.json`` under the hash of those settings and the grid, and a rerun reuses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pbrf.study.sweeps import LR_KEY, SweepSpec
from tasks.engine.artifacts import write_json
from tasks.registry import STEPS, get_key
from tasks.sweeps.tune import paper_grid, tune_lr

TUNE_DIR = "tune"
TUNED_STEPS = ("prepare", "train_base")  # what a validation sweep runs, in effect


def tuning_key(config: dict[str, Any], grid: Sequence[float]) -> str:
    """Hash of what a validation sweep's result depends on: the config keys the registry's
    ``prepare`` and ``train_base`` steps read (the learning rate left out) and the grid."""
    config = copy.deepcopy(config)
    config["train"]["optimizer"].pop("lr", None)
    keys = sorted({k for name in TUNED_STEPS for k in STEPS[name].reads_for(config, {})})
    reads = {key: get_key(config, key) for key in keys}
    text = json.dumps({"reads": reads, "grid": list(grid)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tune_sweep_lr(
    root: Path | str,
    spec: SweepSpec,
    grid: Sequence[float] | None = None,
    *,
    on_point: Callable[[str, dict[str, Any], bool], None] | None = None,
) -> SweepSpec:
    """``spec`` with ``lr`` set at every point to the rate its validation sweep chose.

    ``on_point(point_id, result, reused)`` is called per point. Raises ``ValueError`` when the
    sweep varies the learning rate itself or its optimizer has none (L-BFGS)."""
    if LR_KEY in spec.keys:
        raise ValueError(f"the sweep's axis is {LR_KEY}: it cannot also be tuned per point")
    root = Path(root)
    chosen: dict[str, float] = {}
    for point in spec.model_copy(update={"lr": {}}).points():
        cfg = point.config
        rates = tuple(grid or paper_grid(cfg))
        key = tuning_key(cfg.model_dump(mode="json"), rates)
        path = root / TUNE_DIR / f"{key}.json"
        result = _read(path, key)
        reused = result is not None
        if result is None:
            result = {**tune_lr(cfg, rates), "key": key, "first_point": point.id}
            write_json(path, result)
        chosen[point.id] = float(result["chosen_lr"])
        if on_point is not None:
            on_point(point.id, result, reused)
    return spec.model_copy(update={"lr": chosen})


def tuned_if_asked(
    root: Path | str,
    spec: SweepSpec,
    asked: bool | None,
    on_point: Callable[[str, dict[str, Any], bool], None] | None = None,
) -> SweepSpec:
    """``spec`` with its points' rates tuned when ``asked`` (``None``: the sweep scale's
    ``tune_lr``) and not already set (a finished sweep's spec keeps its rates)."""
    tune = spec.tune_lr if asked is None else asked
    return tune_sweep_lr(root, spec, on_point=on_point) if tune and not spec.lr else spec


def _read(path: Path, key: str) -> dict[str, Any] | None:
    """A stored tuning for ``key``, or ``None`` (absent, unreadable or for another key)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("key") == key else None
