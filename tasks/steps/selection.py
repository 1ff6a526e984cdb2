"""Step ``select`` (module ``selection``, to not shadow the standard library): the M removal
sets and the test points every estimate is measured on, both seeded by ``select.seed``."""

from __future__ import annotations

import torch

from tasks import schemas
from tasks.engine.context import StepContext


def choose(n: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct indices of ``range(n)``, a seeded permutation's prefix (CPU, int64)."""
    if count > n:
        raise ValueError(f"cannot choose {count} of {n} examples")
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:count]


def independent_sets(n: int, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` sets of ``size`` distinct indices of ``range(n)``, each its own draw: sets may
    share examples, a set never repeats one. Set i is the i-th seeded permutation's prefix, so
    raising ``count`` keeps the earlier sets. ``(count, size)``, CPU int64."""
    if size > n:
        raise ValueError(f"cannot choose {size} of {n} examples")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.stack([torch.randperm(n, generator=gen)[:size] for _ in range(count)])


def select(ctx: StepContext) -> None:
    """Write the M removal sets and the test rows (``select.test_points``, all of them if there
    are fewer). Each set holds ``select.group_size`` (or ``round(select.fraction·N)``) training
    rows; ``select.draws='disjoint'`` draws all M·k rows without replacement, ``'independent'``
    draws each set on its own (ε = 1/N per removed row either way)."""
    meta = ctx.load_checkpoint("dataset").meta
    sc = ctx.cfg.select
    n_train = int(meta["n_train"])
    m, k = sc.num_removals, sc.size(n_train)
    if sc.draws == "independent":
        removed = independent_sets(n_train, m, k, sc.seed)
    else:
        removed = choose(n_train, m * k, sc.seed).view(m, k)
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
