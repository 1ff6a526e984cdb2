"""Step ``select`` (module ``selection``, to not shadow the standard library): the M removal
sets and the test points every estimate is measured on, both seeded by ``select.seed``."""

from __future__ import annotations

import torch

from tasks import schemas
from tasks.context import StepContext


def choose(n: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct indices of ``range(n)``, a seeded permutation's prefix (CPU, int64)."""
    if count > n:
        raise ValueError(f"cannot choose {count} of {n} examples")
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:count]


def select(ctx: StepContext) -> None:
    """Write the M × group_size removed training rows (without replacement) and the test rows
    (``select.test_points``, all of them if there are fewer)."""
    meta = ctx.load_checkpoint("dataset").meta
    sc = ctx.cfg.select
    m, k = sc.num_removals, sc.group_size
    removed = choose(int(meta["n_train"]), m * k, sc.seed).view(m, k)
    n_test = int(meta["n_test"])
    # a second stream of the same seed: the test points do not change when M changes
    test = choose(n_test, min(sc.test_points, n_test), sc.seed + 1_000_003)
    ctx.write_table(
        "removed",
        schemas.REMOVED,
        {
            "removal_id": [i for i in range(m) for _ in range(k)],
            "position": [j for _ in range(m) for j in range(k)],
            "train_index": removed.flatten().tolist(),
        },
    )
    ctx.write_table(
        "test_points",
        schemas.TEST_POINTS,
        {"position": list(range(test.numel())), "test_index": test.tolist()},
    )
