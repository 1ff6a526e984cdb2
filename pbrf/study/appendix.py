"""Presets of the appendix studies (plain dicts; :mod:`pbrf.study.presets` turns them into presets).

``digits-mislabel`` — Figure 6 (Appendix F.3): 10 % of the digits training labels replaced by
another class, every training example ranked by its self-influence under influence functions
and under the PBRF. The network is the default study's MLP at width 32 (d = 3466): the N = 1437
PBRFs then train as one vectorized run in minutes on a CPU, and the exact self-influence solve
is a primal d × d Cholesky. The decomposition that runs beside it is cut to the warm start and
the PBRF (Table 2 on the corrupted data).

Its ``paper`` scale is the paper's set-up (10 % of MNIST, MLP 1024×2), sized for a GPU and not
run here: d = 1.86 M, so the exact solve is out of reach (its dual kernel (N·r)² = 54 000²
floats, 23 GB, and ≈ 10¹⁸ FLOPs to build) and CG solves the 6000 gradients 500 at a time
(≈ 4·10¹⁶ FLOPs); the 6000 PBRFs (50 epochs × 47 steps × 128 examples × 6d ≈ 2·10¹⁶ FLOPs,
≈ 750 MB of parameters per 100 models) run as 60 shards of 100.
"""

from __future__ import annotations

from typing import Any

STUDY_PRESETS: dict[str, dict[str, Any]] = {
    "digits-mislabel": {
        "config": {
            "name": "digits-mislabel",
            "data": {"name": "digits"},
            "model": {"name": "mlp", "width": 32, "depth": 2},
            "train": {"optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 100, "batch_size": 128},
            "retrain": {"variants": ["warm", "pbrf"]},
            "influence": {"solver": {"name": "lissa", "depth": 300, "batch_size": None}},
            "damping": 0.001,
            "mislabel": {"fraction": 0.1, "seed": 0},
        },
        "description": "Figure 6: mislabel detection, 10 % of digits labels corrupted (MLP 32×2)",
        "scales": {
            "smoke": {
                "select.num_removals": 3,
                "select.test_points": 10,
                "train.epochs": 3,
                "influence.solver.depth": 20,
                "data.train_size": 100,
                "model.width": 16,
            },
            "paper": {
                "data.name": "mnist",
                "data.fraction": 0.1,
                "model.width": 1024,
                "mislabel.solver": {"name": "cg", "max_iter": 200, "tol": 1e-6},
                "mislabel.rhs_chunk": 500,
                "mislabel.shards": 60,
            },
        },
        # an appendix study (Figure 6), not a row of Tables 5 or 2
        "paper_row": None,
        "notes": (
            "Figure 6's set-up: 10 % of the training labels replaced; 'random labels' read as "
            "a uniformly drawn *other* class (the paper does not say whether the true class can "
            "be drawn again)",
            "the paper gives no epochs, learning rate or LiSSA settings for this study: those "
            "of the MLP rows' smoke-sized stand-in are used (100 epochs at lr 0.1; LiSSA depth "
            "300, full batch); the self-influence PBRFs follow mislabel.pbrf",
            "ranking by self-influence, the fraction of corrupted labels found among the "
            "top-ranked examples, as Figure 6 plots",
        ),
    },
}
