"""``pbrf sweep NAME --tune-lr``: the learning rate chosen at every grid point, as the paper did.

Appendix E.3/E.4 chose each model's learning rate by a validation sweep over {1, 0.3, 0.1, 0.03,
0.01, 0.003, 0.001}; a Figure-5 point is a different model (another width, depth, weight decay
or number of epochs), so the sweep runs :func:`tasks.sweeps.tune.tune_lr` at every point and
the point trains at the rate it chose (:attr:`pbrf.study.sweeps.SweepSpec.lr`).

Validation training reads only what θˢ's training reads (data, model, training settings other
than the rate, loss, dtype, kernel, device), so points that differ elsewhere (damping, the
PBRF's epochs, the removal fraction) share one tuning. Each tuning is kept in
``<sweep>/tune/<key>.json`` under the hash of those settings and the grid, and a rerun reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pbrf.study.sweeps import LR_KEY, SweepSpec
from tasks.engine.artifacts import write_json
from tasks.sweeps.tune import paper_grid, tune_lr

TUNE_DIR = "tune"
# the config sections θˢ's training reads (tasks.registry: train_base, prepare), without the rate
TUNING_READS = ("data", "model", "train", "loss", "dtype", "kernel", "device", "mislabel")


def tuning_key(config: dict[str, Any], grid: Sequence[float]) -> str:
    """Hash of what a validation sweep's result depends on: the settings θˢ's training reads
    (the learning rate left out) and the grid."""
    reads = {k: config.get(k) for k in TUNING_READS}
    train = dict(reads["train"] or {})
    train["optimizer"] = {k: v for k, v in train["optimizer"].items() if k != "lr"}
    reads["train"] = train
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


def _read(path: Path, key: str) -> dict[str, Any] | None:
    """A stored tuning for ``key``, or ``None`` (absent, unreadable or for another key)."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("key") == key else None
