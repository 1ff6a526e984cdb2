"""iHVP solvers on the default study's MLP: the float64 exact solve and linearize-once products.

Run ``python benchmarks/bench_solvers.py`` (``--quick`` for a small model in about a minute,
``--help`` for the flags). Set-up: the ``digits-mlp`` study — a 64-128-128-10 ReLU MLP trained
with softmax cross-entropy on scikit-learn digits (N = 1437) by 100 epochs of SGD, lr 0.1,
batch 128 (float32) — and as right-hand sides the loss gradients of 20 training examples
(``removal_gradients``), damping λ = 1e-3. Everything is timed in one process, one after the
other, with ``--threads`` intra-op threads (default 1: stable ratios on a shared CPU).

It prints:

1. **Exact solve.** *Before*: the previous reference — the d × d GNH materialized in float32
   from matrix-free products (256 columns per product), symmetrized, damped, Cholesky-factored
   in float32. *After*: :func:`pbrf.influence.inverse_curvature_product` with
   ``ExactSettings()`` — float64, here the dual (Woodbury) solve through the (N·r)² kernel of
   the Gauss-Newton factor (r = C − 1 = 9). Shown: both times (best of ``--exact-repeat``),
   their ratio, the kernel-build share of the new solve, the max relative difference
   ``max_j ‖x_before_j − x_after_j‖ / ‖x_after_j‖`` (the float32 solve's error, since the
   float64 solve's residual is printed too and is at round-off).
2. **Products and CG iterations on 20 vectors** (best of ``--repeat``): one matrix-free GNH
   product as before (``gnh_product``: forward pass, pullback and jvp rebuilt per call), one
   product of the linearized GNH (:class:`pbrf.curvature.LinearizedGNH`), and one CG iteration
   on the linearized GNH — measured as (time of 21 iterations − time of 1) / 20, so set-up and
   the final true-residual check are excluded. Ratio = CG iteration / product.
3. **Linearize-once speed-up**: CG iterations and single-vector power iterations with the
   rebuilt-per-call product vs the linearized one (same CG code, same iteration count).

No number is asserted; ratios depend on the machine, the thread count and other load.
Measured once (1 thread, a 2-core CPU shared with other jobs, load average 1–5): exact solve
582 s before → 79 s after (7.4×; 49 s factor rows + kernel, 30 s Cholesky + solve), max
relative difference 4e-5, float64 residual 1.6e-15; one CG iteration = 0.97–0.99 of one
20-vector GNH product; linearize-once 0.97–0.99× on 20-vector products, 1.14–1.17× on 30
single-vector power iterations. Measured again on the same machine under heavy load (1-minute
load average 5–17 from other jobs): exact solve 3412 s before → 270 s after (12.6×; 187 s
factor rows + kernel, 84 s factorization + solve), max relative difference 4.0e-5, float64
residual 1.6e-15; with ``--clock cpu`` (this process's CPU time, robust to that load; load
average 6.8) one CG iteration = 1.04 matrix-free GNH products of 20 vectors (1.08 linearized
products), linearize-once 1.04× on 20-vector products and 1.29× on 30 power iterations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pbrf.curvature import LinearizedGNH, curvature_matvec, dense_from_matvec, gnh_product
from pbrf.data import load_dataset
from pbrf.gradients import removal_gradients
from pbrf.influence import inverse_curvature_product
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import train_base
from pbrf.solvers import ExactSettings, conjugate_gradient, power_iteration
from pbrf.study.config import DataConfig, TrainConfig

DAMPING = 1e-3
RHS = 20


@dataclass
class Timing:
    best: float
    median: float
    runs: int


CLOCK: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time


def time_it(fn: Callable[[], object], repeat: int) -> tuple[Timing, object]:
    """Best and median wall time of ``repeat`` calls of ``fn``; the last result."""
    runs, out = [], None
    for _ in range(repeat):
        start = CLOCK()
        out = fn()
        runs.append(CLOCK() - start)
    return Timing(min(runs), statistics.median(runs), len(runs)), out


def fmt(t: Timing) -> str:
    return f"{t.best:9.3f} s (median {t.median:.3f} s of {t.runs})"


def legacy_exact_solve(problem: Problem, theta: Tensor, x: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """The previous exact reference: dense float32 GNH from matvecs, then Cholesky in float32."""
    d = theta.numel()
    matvec = curvature_matvec(problem, theta, x, t, "gnh")
    a = dense_from_matvec(matvec, d, v.dtype, v.device)
    a = 0.5 * (a + a.T) + DAMPING * torch.eye(d, dtype=a.dtype, device=a.device)
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(v.T, chol).T
    return torch.linalg.solve(a, v.T).T


def setup(quick: bool) -> tuple[Problem, Tensor, Tensor, Tensor, Tensor]:
    """Train the study's MLP (``--quick``: 32 wide, 300 examples) and take 20 loss gradients."""
    ds = load_dataset(DataConfig(name="digits"))
    x, t = ds.x_train, ds.t_train
    width = 128
    if quick:
        x, t, width = x[:300], t[:300], 32
    model = build_model(
        "mlp", input_shape=ds.input_shape, output_dim=ds.output_dim, seed=0, width=width, depth=2
    )
    problem = Problem.from_module(model, get_loss("cross_entropy"))
    train = TrainConfig(optimizer={"name": "sgd", "lr": 0.1}, epochs=100, batch_size=128)
    theta = train_base(problem, flat_params(model), x, t, train).theta_s
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:RHS]
    grads = removal_gradients(problem, theta, x[idx, None], t[idx, None])
    return problem, theta, x, t, grads


def part_exact(args: argparse.Namespace, problem, theta, x, t, v) -> None:
    d, n = theta.numel(), x.shape[0]
    print(f"\n1. exact solve of (G + λI) X = V: d = {d}, N = {n}, {v.shape[0]} right-hand sides")
    before, x_before = time_it(
        lambda: legacy_exact_solve(problem, theta, x, t, v), args.exact_repeat
    )
    print(f"   before  dense float32 GNH + Cholesky  {fmt(before)}")
    marks: list[float] = []

    def new() -> object:
        marks.clear()
        marks.append(CLOCK())
        return inverse_curvature_product(
            problem, theta, x, t, v, damping=DAMPING, solver=ExactSettings(),
            progress=lambda i, total: marks.append(CLOCK()),
        )  # fmt: skip

    after, res = time_it(new, args.exact_repeat)
    info = res.info
    kernel = marks[-1] - marks[0] if len(marks) > 1 else float("nan")
    print(
        f"   after   float64 {info['method']} ({info['factorization']})        {fmt(after)}"
        f"   [last run: factor rows + kernel {kernel:.1f} s, factorization + solve "
        f"{after.median - kernel if after.runs == 1 else float('nan'):.1f} s]"
    )
    print(
        f"           matrix {info['matrix_size']}² float64 = {info['matrix_bytes'] / 2**30:.2f} GiB"
        f" (rank r = {info.get('rank')}); max residual {info['max_residual']:.2e}; "
        f"converged {res.converged} {list(res.warnings)}"
    )
    diff = float(((x_before - res.x).norm(dim=-1) / res.x.norm(dim=-1)).max())
    print(f"   ratio before/after = {before.best / after.best:.1f}×")
    print(f"   max_j ‖x_before − x_after‖/‖x_after‖ = {diff:.3g}  (float32 solve vs float64)")


def part_products(args: argparse.Namespace, problem, theta, x, t, v) -> None:
    print(f"\n2. one GNH product vs one CG iteration, {v.shape[0]} vectors (best of {args.repeat})")
    op = LinearizedGNH(problem, theta, x, t)
    rebuilt = curvature_matvec(problem, theta, x, t, "gnh")
    torch.testing.assert_close(op(v), gnh_product(problem, theta, x, t, v))  # same operator
    prod_old, _ = time_it(lambda: gnh_product(problem, theta, x, t, v), args.repeat)
    prod_new, _ = time_it(lambda: op(v), args.repeat)

    def cg_iteration(matvec: Callable[[Tensor], Tensor]) -> float:
        def run(iters: int) -> Callable[[], object]:
            return lambda: conjugate_gradient(matvec, v, damping=DAMPING, max_iter=iters, tol=1e-30)

        many, _ = time_it(run(21), args.repeat)
        one, _ = time_it(run(1), args.repeat)
        return (many.best - one.best) / 20

    cg_new = cg_iteration(op)
    cg_old = cg_iteration(rebuilt)
    print(f"   matrix-free GNH product (rebuilt per call)  {fmt(prod_old)}")
    print(f"   linearized GNH product                      {fmt(prod_new)}")
    print(f"   one CG iteration (linearized)               {cg_new:9.3f} s")
    print(
        f"   ratio CG iteration / matrix-free product = {cg_new / prod_old.best:.2f}; "
        f"/ linearized product = {cg_new / prod_new.best:.2f}"
    )
    print("\n3. linearize-once speed-up (rebuilt-per-call ÷ linearized)")
    print(
        f"   product on {v.shape[0]} vectors {prod_old.best / prod_new.best:.2f}×; "
        f"CG iteration {cg_old / cg_new:.2f}× ({cg_old:.3f} s → {cg_new:.3f} s)"
    )
    d = theta.numel()
    power_iters = 30

    def power(matvec: Callable[[Tensor], Tensor]) -> Callable[[], object]:
        return lambda: power_iteration(matvec, d, iters=power_iters, tol=1e-300)

    p_old, e_old = time_it(power(rebuilt), args.repeat)
    p_new, e_new = time_it(lambda: power(LinearizedGNH(problem, theta, x, t))(), args.repeat)
    print(
        f"   {power_iters} power iterations (1 vector, including the linearization) "
        f"{p_old.best:.3f} s → {p_new.best:.3f} s = {p_old.best / p_new.best:.2f}× "
        f"(λ_max {e_old.value:.6g} vs {e_new.value:.6g})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32-wide MLP on 300 examples")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each cheap timing")
    parser.add_argument(
        "--exact-repeat", type=int, default=None, help="runs of each exact solve (1; quick: 3)"
    )
    parser.add_argument("--skip-exact", action="store_true", help="only parts 2 and 3")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or this process's CPU time (with 1 thread: robust to other jobs' load)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.exact_repeat is None:
        args.exact_repeat = 3 if args.quick else 1
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
        f"{args.clock} clock, "
        f"load average {load:.2f}{'  (busy machine: ratios are noisier)' if load > 1 else ''}"
    )
    start = time.perf_counter()
    problem, theta, x, t, v = setup(args.quick)
    print(f"set-up (training + gradients) {time.perf_counter() - start:.1f} s")
    if not args.skip_exact:
        part_exact(args, problem, theta, x, t, v)
    part_products(args, problem, theta, x, t, v)


if __name__ == "__main__":
    main()
