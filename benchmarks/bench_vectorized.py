"""Vectorized vs naive: what batching M models / M right-hand sides into one computation buys.

Run ``python benchmarks/bench_vectorized.py`` (``--help`` for the flags). Two comparisons, each
timed in the same process on the same device, after one untimed warm-up run:

1. **Retraining.** M warm-start leave-one-out retrains (Eq. 2 with ε = 1/N, i.e. weight 0 on the
   removed example) of an MLP 64-128-128-10 on scikit-learn digits (N = 1437, batch 128, plain
   SGD lr 0.1), all starting from the same θˢ and visiting the same batch order.

   * *baseline*: M sequential eager PyTorch loops, one ``nn.Module`` copy and one
     ``torch.optim.SGD`` per removal; per batch ``loss = (w · per_example_loss).sum() / |B|``
     with ``w = 0`` on the removed example (the definition of
     :func:`pbrf.objectives.downweighted_objective`), ``loss.backward(); opt.step()``.
   * *vectorized*: one call to :func:`pbrf.trainer.train_stacked` with the ``warm`` objective of
     :func:`pbrf.responses.variant_objective` — ``vmap(grad_and_value(objective))`` over the
     stacked ``(M, d)`` parameters.

   Both must give the same final parameters; the script prints the max absolute difference
   (float32, expect ≲1e-5). It then shows where the vectorized run spends its time: a phase
   breakdown (an instrumented copy of ``train_stacked``'s inner loop, checked to reproduce its
   result) and the top ops by self CPU time from ``torch.profiler``.

2. **LiSSA.** ``(G + λI)⁻¹ g_z`` for the loss gradients ``g_z`` of M training examples at θˢ,
   with the GNH matvec of :mod:`pbrf.curvature` (by default on minibatches of 128 drawn from a
   generator reseeded for every solve, so every solve sees the same batch sequence; or the
   deterministic full-data matvec with ``--lissa-matvec full``) and a fixed scale
   σ = 1.5 (λ_max + λ), λ_max from power iteration.

   * *baseline*: M calls of :func:`pbrf.solvers.lissa`, one right-hand side each.
   * *vectorized*: one call with all M right-hand sides as the rows of a ``(M, d)`` block.

   The script prints the max relative difference ``max_j ‖x_j − x̂_j‖ / ‖x̂_j‖`` between the two
   (float tolerance: the iteration is the same, only the GEMM shapes differ).

How to read the output: every timing is the best (minimum) of ``--repeat`` runs; the median is
printed beside it. ``ratio`` = baseline seconds / vectorized seconds, i.e. the speed-up of the
vectorized code; above 1 the vectorized code is faster. The ratios depend on the device, the
number of threads and on how small the model is (a tiny MLP on a CPU is dominated by per-op
dispatch overhead, which is exactly what batching amortizes). No number here is asserted.
On a CPU shared with other jobs, pass ``--threads 1``: an oversubscribed multi-thread pool can
slow small ops down by one to two orders of magnitude and swamps the comparison (the script
prints a note when the load average is high).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad_and_value, vmap

from pbrf.curvature import Matvec, curvature_matvec, sampled_matvec
from pbrf.data import load_dataset
from pbrf.gradients import removal_gradients
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.objectives import Batch, removal_weights
from pbrf.optim import FirstOrderOptimizer
from pbrf.params import flat_params, load_flat_
from pbrf.problem import Problem
from pbrf.responses import variant_objective
from pbrf.schedule import batches_of, epoch_orders
from pbrf.solvers import lissa, top_eigenvalue
from pbrf.study.config import DataConfig
from pbrf.trainer import SGDSettings, StackedObjective, train_stacked

BATCH_SIZE = 128
LR = 0.1
SEED = 0


@dataclass
class Timing:
    best: float
    median: float
    runs: list[float]


@dataclass
class Row:
    part: str
    baseline: Timing
    vectorized: Timing

    @property
    def ratio(self) -> float:
        return self.baseline.best / self.vectorized.best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, repeat: int) -> tuple[Timing, object]:
    """Best and median wall time of ``repeat`` calls of ``fn`` (after CUDA sync); last result."""
    runs: list[float] = []
    out: object = None
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        runs.append(time.perf_counter() - start)
    return Timing(min(runs), statistics.median(runs), runs), out


def fmt(t: Timing) -> str:
    return f"{t.best:.3f} s (median {t.median:.3f} s over {len(t.runs)})"


# --------------------------------------------------------------------------------------------
# Part 1: M retrains
# --------------------------------------------------------------------------------------------


def eager_retrains(
    model: nn.Module,
    theta_s: Tensor,
    x: Tensor,
    t: Tensor,
    orders: list[Tensor],
    removed: Tensor,
) -> Tensor:
    """The baseline: one plain eager PyTorch training loop per removal, run one after another.

    ``removed`` is ``(M, 1)``; returns the final parameters ``(M, d)``.
    """
    device = x.device
    dev_orders = [o.to(device) for o in orders]
    finals = []
    for z in removed[:, 0].tolist():
        net = copy.deepcopy(model)
        load_flat_(net, theta_s)
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        for order in dev_orders:
            for idx in order.split(BATCH_SIZE):
                w = (idx != z).to(x.dtype)  # weight 0 on the removed example
                per_example = F.cross_entropy(net(x[idx]), t[idx], reduction="none")
                loss = (w * per_example).sum() / idx.numel()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        finals.append(flat_params(net))
    return torch.stack(finals)


def vectorized_retrains(
    objective: StackedObjective,
    theta_s: Tensor,
    x: Tensor,
    t: Tensor,
    orders: list[Tensor],
    removed: Tensor,
) -> Tensor:
    """All M retrains as one :func:`pbrf.trainer.train_stacked` call; returns ``(M, d)``."""
    m = removed.shape[0]
    res = train_stacked(
        objective,
        torch.zeros(m, theta_s.numel(), dtype=theta_s.dtype, device=theta_s.device),
        x,
        t,
        orders,
        SGDSettings(optimizer="sgd", lr=LR, batch_size=BATCH_SIZE),
        removed=removed,
        epsilon=1.0 / x.shape[0],
        mask_removed=True,
        label="benchmark retraining",
    )
    return theta_s[None] + res.theta  # the objective's variable is the displacement from θˢ


def phase_breakdown(
    objective: StackedObjective,
    theta_s: Tensor,
    x: Tensor,
    t: Tensor,
    orders: list[Tensor],
    removed: Tensor,
) -> tuple[dict[str, float], Tensor]:
    """``train_stacked``'s inner loop (SGD, weight mask) with a timer around each phase.

    Uses the same library pieces in the same order; returns seconds per phase and the final
    parameters (compared against ``train_stacked`` by the caller, to show this is the same
    computation).
    """
    device = x.device
    n = x.shape[0]
    eps = 1.0 / n
    theta = torch.zeros(removed.shape[0], theta_s.numel(), dtype=theta_s.dtype, device=device)
    removed = removed.to(device)
    rx, rt = x[removed], t[removed]
    opt = FirstOrderOptimizer("sgd")
    step = vmap(grad_and_value(objective), in_dims=(0, None, 0, 0, 0))
    phases = {
        "batch indexing + removal weights": 0.0,
        "vmap(grad_and_value) = forward + backward": 0.0,
        "optimizer step": 0.0,
        "loss bookkeeping": 0.0,
    }
    names = list(phases)

    def clock() -> float:
        sync(device)
        return time.perf_counter()

    for order in orders:
        total = torch.zeros(theta.shape[0], dtype=theta.dtype, device=device)
        for idx in batches_of(order, BATCH_SIZE):
            t0 = clock()
            idx = idx.to(device)
            batch = Batch(x[idx], t[idx], int(idx.numel()))
            w = removal_weights(idx, removed, n, eps).to(theta.dtype)
            t1 = clock()
            grads, values = step(theta, batch, w, rx, rt)
            t2 = clock()
            theta = opt.step(theta, grads, LR)
            t3 = clock()
            total += values.detach()
            t4 = clock()
            for name, dt in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name] += dt
        bool(torch.isfinite(total).all())  # the per-epoch finiteness check of train_stacked
    return phases, theta_s[None] + theta


def profile_top_ops(fn: Callable[[], object], device: torch.device, top: int) -> list[str]:
    """Top ``top`` ops of one call of ``fn`` by self CPU time (and device time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    events = list(prof.key_averages())
    total_cpu = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = [f"    {'op':<34} {'self CPU ms':>11} {'% CPU':>6} {'calls':>7}"]
    for e in events[:top]:
        line = (
            f"    {e.key[:34]:<34} {e.self_cpu_time_total / 1e3:>11.1f} "
            f"{100 * e.self_cpu_time_total / total_cpu:>5.1f}% {e.count:>7}"
        )
        if device.type == "cuda":
            dev_us = getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))
            line += f"  self device {dev_us / 1e3:.1f} ms"
        lines.append(line)
    lines.append(f"    (total self CPU time {total_cpu / 1e3:.1f} ms, {len(events)} distinct ops)")
    return lines


def setup(args: argparse.Namespace, device: torch.device):
    """The MLP 64-128-128-10 on digits, θˢ after ``--base-epochs``, and M spread-out removals."""
    data = load_dataset(DataConfig(name="digits")).to(device, torch.float32)
    x, t = data.x_train, data.t_train
    model = build_model(
        "mlp",
        input_shape=data.input_shape,
        output_dim=data.output_dim,
        seed=SEED,
        width=128,
        depth=2,
    ).to(device)
    problem = Problem.from_module(model, get_loss("cross_entropy"))
    theta = base_parameters(problem, model, x, t, args.base_epochs)
    n = x.shape[0]
    removed = torch.linspace(0, n - 1, args.models).round().long()[:, None].to(device)  # (M, 1)
    return model, problem, x, t, theta, removed


def part_retrain(args: argparse.Namespace, device: torch.device) -> Row:
    model, problem, x, t, theta_s, removed = setup(args, device)
    n, m = x.shape[0], args.models
    orders = list(epoch_orders(n, SEED, range(args.base_epochs, args.base_epochs + args.epochs)))
    objective, mask, prepare = variant_objective("warm", problem, theta_s, 1.0 / n, 0.0)
    assert mask and prepare is None  # the warm variant removes by weight mask

    steps = args.epochs * len(batches_of(orders[0], BATCH_SIZE))
    print(
        f"\n[1] {m} warm-start retrains: MLP 64-128-128-10 ({theta_s.numel()} parameters), "
        f"digits N={n}, {args.epochs} epochs x {steps // args.epochs} steps, batch {BATCH_SIZE}, "
        f"SGD lr {LR}"
    )

    def baseline() -> Tensor:
        return eager_retrains(model, theta_s, x, t, orders, removed)

    def vectorized() -> Tensor:
        return vectorized_retrains(objective, theta_s, x, t, orders, removed)

    # Warm-up (allocator, lazy init, vmap/functorch first-call costs), untimed.
    warm_orders = orders[:1]
    eager_retrains(model, theta_s, x, t, warm_orders, removed[:2])
    vectorized_retrains(objective, theta_s, x, t, warm_orders, removed)

    t_base, theta_base = time_it(baseline, device, args.repeat)
    t_vec, theta_vec = time_it(vectorized, device, args.repeat)
    assert isinstance(theta_base, Tensor) and isinstance(theta_vec, Tensor)
    diff = float((theta_base - theta_vec).abs().max())
    moved = float((theta_vec - theta_s).abs().max())
    print(f"    baseline   (eager loops):   {fmt(t_base)}")
    print(f"    vectorized (train_stacked): {fmt(t_vec)}")
    print(f"    speed-up: {t_base.best / t_vec.best:.2f}x")
    print(
        f"    agreement: max |θ_eager − θ_vectorized| = {diff:.2e} "
        f"(max |θ − θˢ| moved by training: {moved:.2e})"
    )
    print(
        f"    per step: baseline {1e3 * t_base.best / (m * steps):.3f} ms per model-step, "
        f"vectorized {1e3 * t_vec.best / steps:.3f} ms per step of all {m} models"
    )

    # Fixed cost of the vmap machinery: one model through each path.
    t_base1, _ = time_it(
        lambda: eager_retrains(model, theta_s, x, t, orders, removed[:1]), device, args.repeat
    )
    t_vec1, _ = time_it(
        lambda: vectorized_retrains(objective, theta_s, x, t, orders, removed[:1]),
        device,
        args.repeat,
    )
    print(
        f"    M=1 for reference: eager {t_base1.best:.3f} s, train_stacked {t_vec1.best:.3f} s "
        f"-> vectorized M={m} costs {t_vec.best / t_vec1.best:.1f}x its M=1 run "
        f"(eager: {t_base.best / t_base1.best:.1f}x)"
    )

    phases, theta_ph = phase_breakdown(objective, theta_s, x, t, orders, removed)
    same = float((theta_ph - theta_vec).abs().max())
    total = sum(phases.values())
    print(
        f"    where the vectorized time goes (instrumented loop, {total:.3f} s incl. timer syncs; "
        f"reproduces train_stacked to {same:.1e}):"
    )
    for name, sec in phases.items():
        print(f"      {name:<44} {sec:7.3f} s  {100 * sec / total:5.1f}%")
    print(f"    torch.profiler, one vectorized run, top {args.top_ops} ops by self CPU time:")
    for line in profile_top_ops(vectorized, device, args.top_ops):
        print(line)
    return Row(f"retrain x{m} ({args.epochs} ep)", t_base, t_vec)


def base_parameters(
    problem: Problem, model: nn.Module, x: Tensor, t: Tensor, epochs: int
) -> Tensor:
    """θˢ: ``epochs`` epochs of full-data SGD from the model's initialization (untimed)."""
    theta0 = flat_params(model)
    if epochs == 0:
        return theta0
    objective, _, _ = variant_objective("cold", problem, theta0, 0.0, 0.0)
    res = train_stacked(
        objective,
        torch.zeros(1, theta0.numel(), dtype=theta0.dtype, device=theta0.device),
        x,
        t,
        list(epoch_orders(x.shape[0], SEED, range(epochs))),
        SGDSettings(optimizer="sgd", lr=LR, batch_size=BATCH_SIZE),
        removed=torch.empty(1, 0, dtype=torch.long),
        epsilon=0.0,
        label="benchmark base training",
    )
    return theta0 + res.theta[0]


# --------------------------------------------------------------------------------------------
# Part 2: LiSSA with M right-hand sides
# --------------------------------------------------------------------------------------------


def part_lissa(args: argparse.Namespace, device: torch.device) -> Row:
    _, problem, x, t, theta, removed = setup(args, device)
    m = args.models
    rhs = removal_gradients(problem, theta, x[removed], t[removed])  # (M, d)
    damping = args.damping
    full = curvature_matvec(problem, theta, x, t, "gnh")
    eig = top_eigenvalue(full, theta.numel(), iters=50, dtype=theta.dtype, device=device)
    scale = 1.5 * (eig + damping)
    depth = args.lissa_depth

    def make_matvec() -> Matvec:
        if args.lissa_matvec == "full":
            return full
        # A fresh generator per solve: every solve draws the same minibatch sequence.
        gen = torch.Generator().manual_seed(SEED)
        return sampled_matvec(problem, theta, x, t, BATCH_SIZE, gen, "gnh")

    def solve(v: Tensor) -> Tensor:
        return lissa(make_matvec(), v, depth=depth, scale=scale, damping=damping).x

    def baseline() -> Tensor:
        return torch.cat([solve(rhs[j : j + 1]) for j in range(m)])

    def vectorized() -> Tensor:
        return solve(rhs)

    batch_txt = "full data" if args.lissa_matvec == "full" else f"minibatch {BATCH_SIZE}"
    print(
        f"\n[2] LiSSA, {m} right-hand sides (loss gradients of {m} training examples at θˢ): "
        f"GNH matvec on {batch_txt}, depth {depth}, λ={damping:g}, "
        f"σ=1.5(λ_max+λ)={scale:.4g} (λ_max≈{eig:.4g})"
    )
    solve(rhs[:2])  # warm-up, untimed
    t_base, x_base = time_it(baseline, device, args.repeat)
    t_vec, x_vec = time_it(vectorized, device, args.repeat)
    assert isinstance(x_base, Tensor) and isinstance(x_vec, Tensor)
    rel = float(((x_vec - x_base).norm(dim=-1) / x_base.norm(dim=-1)).max())
    print(f"    baseline   ({m} single-rhs solves): {fmt(t_base)}")
    print(f"    vectorized (one {m}-rhs solve):     {fmt(t_vec)}")
    print(f"    speed-up: {t_base.best / t_vec.best:.2f}x")
    same = " (bitwise identical)" if torch.equal(x_base, x_vec) else ""
    print(f"    agreement: max_j ‖x_j − x̂_j‖/‖x̂_j‖ = {rel:.2e}{same}")
    print(
        f"    per LiSSA step: baseline {1e3 * t_base.best / (m * depth):.3f} ms per rhs-step, "
        f"vectorized {1e3 * t_vec.best / depth:.3f} ms per step of all {m}"
    )
    return Row(f"LiSSA x{m} (depth {depth})", t_base, t_vec)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--epochs", type=int, default=10, help="retraining epochs (default 10)")
    p.add_argument("--base-epochs", type=int, default=5, help="epochs of θˢ training (untimed)")
    p.add_argument("--models", type=int, default=20, help="M: removals / right-hand sides")
    p.add_argument("--lissa-depth", type=int, default=100, help="LiSSA depth T (default 100)")
    p.add_argument(
        "--lissa-matvec",
        choices=("sampled", "full"),
        default="sampled",
        help="GNH on minibatches of 128 (reseeded per solve) or on all N examples",
    )
    p.add_argument("--damping", type=float, default=1e-3, help="LiSSA damping λ")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; best kept")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: as is)"
    )
    p.add_argument("--top-ops", type=int, default=5, help="profiler rows to print")
    p.add_argument(
        "--parts", default="retrain,lissa", help="comma-separated subset of: retrain, lissa"
    )
    args = p.parse_args(argv)
    if args.models < 1 or args.epochs < 1 or args.lissa_depth < 1 or args.repeat < 1:
        p.error("--models, --epochs, --lissa-depth and --repeat must be >= 1")
    if args.base_epochs < 0:
        p.error("--base-epochs must be >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} "
        f"CPU threads, M={args.models}, repeat={args.repeat} (best kept)"
    )
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if device.type == "cpu" and load > 0.5 * cores:
        print(
            f"note: 1-minute load average {load:.1f} on {cores} cores: other processes compete for "
            "the CPU and the timings are noisy; with more than one torch thread on a busy machine "
            "the thread pool can slow down many-fold — consider --threads 1"
        )
    parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    unknown = parts - {"retrain", "lissa"}
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}; choose retrain, lissa")
    rows = []
    if "retrain" in parts:
        rows.append(part_retrain(args, device))
    if "lissa" in parts:
        rows.append(part_lissa(args, device))

    print(f"\n{'part':<24} {'baseline s':>11} {'vectorized s':>13} {'ratio':>7}")
    for r in rows:
        print(f"{r.part:<24} {r.baseline.best:>11.3f} {r.vectorized.best:>13.3f} {r.ratio:>6.2f}x")


if __name__ == "__main__":
    main()
