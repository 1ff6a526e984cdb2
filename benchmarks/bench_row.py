"""Time one row of the paper's study on whatever device this is: model-epochs per second of base
training and of each retraining variant, next to the device's measured matmul throughput.

Run ``python benchmarks/bench_row.py [--preset mnist-mlp] [--scale paper|smoke] [--device cuda]``
(``--help`` for the flags). What it does, in one process:

1. **Matmul throughput.** The best of a few ``n × n`` matrix products in the study's dtype
   (n = 4096 on a GPU, 1024 on a CPU): ``2n³ / t`` GFLOP/s, the device's practical peak.
2. **Data.** The preset's data set from ``data.root`` when its files are there; otherwise random
   tensors of the same shapes and split sizes (printed as *synthetic*): the timing depends on
   shapes, not values, so the throughput is the real row's — but no number of the study is.
3. **Memory.** :mod:`pbrf.study.memory`'s estimate of one stacked model and of what all share, and the
   fewest shards of the M removals whose largest shard fits ``--budget-gb`` (default: the
   device's memory, or the machine's RAM on a CPU). Retraining runs shard after shard, as the
   pipeline runs a variant's shards one at a time on an accelerator, so memory is bounded by one
   shard; on CUDA the measured peak of each shard is printed beside the estimate.
4. **Base training** of one model for ``--epochs`` epochs, then each ``--variants`` retraining
   of the M removals for ``--epochs`` epochs from those parameters (the Table 1 objectives,
   vectorized over the models of a shard), each after an untimed warm-up on a slice of the data.
   Every computation runs once per ``--kernels`` entry (:mod:`pbrf.kernels`; default
   ``reference,auto``: the old ``vmap(grad_and_value)`` path beside the fast one), and the
   largest parameter difference of each kernel's result from the first kernel's is printed.
5. **Curvature products.** One product of the damped GNH (Eq. 6) with R = M right-hand sides on
   one LiSSA minibatch (``influence.solver.batch_size``, else the training batch), as LiSSA's
   recursion calls it (:func:`pbrf.curvature.gnh_product`); its FLOPs are counted by
   ``torch.utils.flop_counter`` and its rate is given as a share of the matmul, with the time one
   LiSSA solve of the preset's depth × repeats would take.

A retraining run also evaluates its objective over one fixed pass of the data at its start, after
90 % of its epochs and at its end (the convergence check). A K/2-epoch run amortizes those passes
(under 1 % of its time at K = 200), a 1-epoch timing does not: the rates are of the training
epochs alone (``retrain(checks=False)``, the same optima), and the ``checks s`` column gives, for
the last kernel, the seconds the three passes add to one run (timed as the difference of a run
with them); the extrapolation counts them once per variant.

The matmul is measured again just before and after each timed computation, and each row's
ratio is to the mean of those two (the load of a shared machine changes over a run).
Per row it prints seconds, **model-epochs/s** (models × epochs ÷ seconds), the achieved
GFLOP/s — model-epochs/s × N × the FLOPs one model spends per example in that computation's
step (``MFLOP/ex``, counted by ``torch.utils.flop_counter``: forward + backward for base
training and the Eq. 2 variants; the PBRF adds the removed example's rows and a forward pass at
θˢ, the linearized PBRF is a jvp + vjp, about 1.25× a training step's FLOPs for an MLP) — and
its **ratio** to the matmul throughput. Last, an
extrapolation to the whole row at this scale (base K epochs; cold K + K/2, four variants K/2 —
the matched PBRF's length is unknown before the curvature step and is taken as K/2 here).
Nothing is asserted; on a loaded CPU pass ``--threads 1`` and read the load average printed.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from pbrf import mlpkernel
from pbrf.curvature import autodiff_gnh_chunk
from pbrf.data import DataFilesMissingError, Dataset, load_dataset
from pbrf.kernels import check_kernel, choose_kernel, make_stepper
from pbrf.losses import get_loss
from pbrf.mlpkernel import mlp_shape
from pbrf.models import build_from_options
from pbrf.objectives import Batch, removal_weights
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import BaseRun, Schedule, retrain, train_base, variant_objective
from pbrf.study.memory import GiB, retrain_memory, shards_for
from pbrf.study.presets import load_preset

ALL_VARIANTS = ("cold", "warm", "proximal", "pbrf", "linearized_pbrf", "pbrf_paper")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def matmul_gflops(device: torch.device, dtype: torch.dtype, repeat: int = 5) -> float:
    """The best of ``repeat`` n×n matrix products: 2n³ / t, in GFLOP/s."""
    n = 4096 if device.type == "cuda" else 1024
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g, device=device, dtype=dtype)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b, device)[0] for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def synthetic(cfg: Any) -> Dataset:
    """Random tensors with the shapes, split sizes and targets of ``cfg.data``."""
    facts, sizes = cfg.data.signature(), cfg.data.sizes()
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (n, *facts.input_shape)
        if facts.task == "language_model":
            x = torch.randint(0, facts.output_dim, shape, generator=g)
            return x, torch.randint(0, facts.output_dim, shape, generator=g)
        if facts.task == "reconstruction":
            x = torch.rand(shape, generator=g)
            return x, x.flatten(1).clone()
        x = torch.randn(shape, generator=g)
        if facts.task == "multiclass":
            return x, torch.randint(0, facts.output_dim, (n,), generator=g)
        if facts.task == "binary":
            return x, torch.randint(0, 2, (n, 1), generator=g).float()
        return x, torch.randn(n, facts.output_dim, generator=g)

    x, t = split(sizes.train)
    xt, tt = split(sizes.test)
    return Dataset(cfg.data.name, x, t, xt, tt, facts.task, facts.output_dim)


def flops_per_example(problem: Problem, theta: torch.Tensor, x: torch.Tensor, t: torch.Tensor):
    """Forward + backward FLOPs of one example's loss (counted on a batch of up to 8)."""
    b = min(8, x.shape[0])
    th = theta.detach().clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        loss = problem.example_losses(th, x[:b], t[:b]).sum()
        loss.backward()
    return counter.get_total_flops() / b


def step_flops_per_example(v, kernel, problem, base, ds, removed, cfg) -> float:
    """FLOPs per model and example of one training step of variant ``v`` with ``kernel`` (M
    models on one batch, counted by ``torch.utils.flop_counter``): the work the step executes,
    e.g. the PBRF's extra forward rows and the linearized PBRF's jvp + vjp."""
    n, m = ds.n_train, removed.shape[0]
    b = min(n, cfg.train.batch_size or n)
    anchor = base.theta0 if v == "cold" else base.theta_s
    obj, mask, prepare = variant_objective(v, problem, anchor, 1.0 / n, cfg.damping)
    resolved = choose_kernel(kernel, anchor.numel(), b, n, m, problem, v)
    stepper = make_stepper(v, problem, anchor, 1.0 / n, cfg.damping, resolved, obj)
    idx = torch.arange(b, device=anchor.device)
    batch = Batch(ds.x_train[idx], ds.t_train[idx], b)
    batch = prepare(batch) if prepare is not None else batch
    w = removal_weights(idx, removed, n, 1.0 / n) if mask else torch.ones(m, b)
    w = w.to(anchor)
    rx, rt = ds.x_train[removed], ds.t_train[removed]
    delta = torch.zeros(m, anchor.numel(), dtype=anchor.dtype, device=anchor.device)
    with FlopCounterMode(display=False) as counter:
        stepper.grad_and_value(delta, batch, w, rx, rt)
    return counter.get_total_flops() / (m * b)


def budget_bytes(device: torch.device, gb: float | None) -> float:
    if gb is not None:
        return gb * GiB
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--preset", default="mnist-mlp", help="preset (see `pbrf presets`)")
    p.add_argument("--scale", default="paper", help="preset scale: paper or smoke")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", type=int, default=2, help="epochs timed per variant")
    p.add_argument("--train-size", type=int, help="cap the training examples (data.train_size)")
    p.add_argument("--removals", type=int, help="M (default: the preset's)")
    p.add_argument(
        "--variants",
        default="warm,pbrf,linearized_pbrf",
        help=f"comma-separated retraining variants to time, of {','.join(ALL_VARIANTS)}",
    )
    p.add_argument(
        "--kernels",
        default="reference,auto",
        help="comma-separated training kernels (pbrf.kernels: reference, vmap, loop, mlp, auto)",
    )
    p.add_argument("--budget-gb", type=float, help="memory budget for one shard's computation")
    p.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import yaml

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {"device": args.device}
    for item in args.set:
        key, raw = item.split("=", 1)
        overrides[key] = yaml.safe_load(raw)
    full_n = load_preset(args.preset, overrides, args.scale).data.n_train()
    if args.train_size:
        overrides["data.train_size"] = args.train_size
    if args.removals:
        overrides["select.num_removals"] = args.removals
    cfg = load_preset(args.preset, overrides, args.scale)
    device = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise SystemExit(f"bench_row: unknown variant(s) {sorted(unknown)}")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    load = os.getloadavg()
    print(
        f"device: {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cores {os.cpu_count()}")
    peak = matmul_gflops(device, dtype)
    print(f"matmul throughput ({cfg.dtype}): {peak:.1f} GFLOP/s")

    try:
        ds, origin = load_dataset(cfg.data), f"files under {cfg.data.root}"
    except DataFilesMissingError as exc:
        ds, origin = synthetic(cfg), f"SYNTHETIC (real files absent: {len(exc.missing)} missing)"
    ds = ds.to(device, dtype)
    n = ds.n_train
    module = build_from_options(cfg.model, input_shape=ds.input_shape, output_dim=ds.output_dim)
    module = module.to(device=device, dtype=dtype)
    problem = Problem.from_module(
        module, get_loss(cfg.loss_name(ds.default_loss)), weight_decay=cfg.train.weight_decay
    )
    theta0 = flat_params(module)
    m = cfg.select.num_removals
    fpe = flops_per_example(problem, theta0, ds.x_train, ds.t_train)
    print(
        f"row: {args.preset} ({args.scale}) — {cfg.model.name} on {cfg.data.name}, N = {n} "
        f"({origin}), d = {theta0.numel():,}, batch {cfg.train.batch_size}, "
        f"{cfg.train.optimizer.name}, M = {m}; {fpe / 1e6:.3g} MFLOP per example (fwd+bwd)"
    )

    mem = retrain_memory(cfg)
    budget = budget_bytes(device, args.budget_gb)
    shards = max(cfg.retrain.shards, shards_for(mem, m, budget))
    print(
        f"memory estimate: {mem.per_model / GiB:.3f} GiB per model + {mem.shared / GiB:.3f} GiB "
        f"shared; {m} models = {mem.total(m) / GiB:.2f} GiB; budget {budget / GiB:.1f} GiB → "
        f"{shards} shard(s) of ≤ {math.ceil(m / shards)} (largest ≈ "
        f"{mem.total(math.ceil(m / shards)) / GiB:.2f} GiB)"
    )

    train = cfg.train.model_copy(update={"epochs": args.epochs})
    kernels = [k for k in args.kernels.split(",") if k]
    for k in kernels:
        check_kernel(k)
    print(
        "kernels (base training; then each variant's M models): "
        + "; ".join(
            f"{k} → {choose_kernel(k, theta0.numel(), train.batch_size, n, 1, problem)}, "
            + ", ".join(
                f"{v} {choose_kernel(k, theta0.numel(), train.batch_size, n, m, problem, v)}"
                for v in variants
            )
            for k in kernels
        )
    )
    rows: list[Row] = []
    for kernel in kernels:
        before = matmul_gflops(device, dtype)
        dt, base = timed(
            lambda kernel=kernel: train_base(
                problem, theta0, ds.x_train, ds.t_train, train, kernel=kernel
            ),
            device,
        )
        mm = (before + matmul_gflops(device, dtype)) / 2
        rows.append(Row("base", kernel, 1, dt, "—", base.theta_s[None] - theta0, mm))
    base = train_base(problem, theta0, ds.x_train, ds.t_train, train)  # shared start (untimed)
    removed = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:m, None]
    for v in variants:
        for kernel in kernels:
            last = kernel == kernels[-1]
            rows.append(
                time_variant(
                    v, kernel, problem, base, ds, removed, train, cfg, shards, device, last
                )
            )
    work = {"base": fpe} | {
        v: step_flops_per_example(v, kernels[-1], problem, base, ds, removed.to(device), cfg)
        for v in variants
    }
    print_table(rows, args.epochs, n, work)
    print_gnh(problem, base.theta_s, ds, cfg, m, device)
    extrapolate(rows, kernels[-1], args.epochs, cfg, m, n, full_n)


class Row(NamedTuple):
    label: str
    kernel: str
    models: int
    seconds: float  # for args.epochs epochs, without the convergence check
    peak_mem: str
    delta: torch.Tensor  # (models, d) parameters reached, minus the start
    matmul: float  # GFLOP/s of the matmul measured just before and after (their mean)
    checks: float | None = None  # seconds the convergence check adds to one run (all shards)


def time_variant(
    v, kernel, problem, base, ds, removed, train, cfg, shards, device, checks=False
) -> Row:
    """One variant's retraining of all M removals, shard after shard, with ``kernel``, timed
    without the convergence check; with ``checks``, also the seconds the check adds."""
    m, n, epochs = removed.shape[0], ds.n_train, train.epochs
    run = base if v == "cold" else BaseRun(base.theta_s, base.theta_s, base.orders, base.epoch_loss)
    schedule = Schedule(max(1, epochs // 2) if v == "cold" else epochs, 1.0)
    b = min(n, 2 * (cfg.train.batch_size or n))  # untimed warm-up on a slice of the data
    warm_run = BaseRun(base.theta_s, base.theta_s, base.orders, base.epoch_loss)
    retrain(
        "warm" if v == "cold" else v,  # cold replays the base order over all N examples
        problem,
        warm_run,
        ds.x_train[:b],
        ds.t_train[:b],
        torch.zeros(min(m, 2), 1, dtype=torch.long, device=device),
        train=train,
        damping=cfg.damping,
        schedule=Schedule(1, 1.0),
        kernel=kernel,
    )
    dtype = base.theta_s.dtype

    def run_shards(with_checks: bool) -> tuple[float, list, list]:
        seconds, peaks, deltas = 0.0, [], []
        for part in torch.tensor_split(removed, shards):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            dt, res = timed(
                lambda part=part: retrain(
                    v,
                    problem,
                    run,
                    ds.x_train,
                    ds.t_train,
                    part.to(device),
                    train=train,
                    damping=cfg.damping,
                    schedule=schedule,
                    kernel=kernel,
                    checks=with_checks,
                ),
                device,
            )
            seconds += dt
            deltas.append(res.delta)
            if device.type == "cuda":
                peaks.append(torch.cuda.max_memory_allocated(device) / GiB)
        return seconds, peaks, deltas

    before = matmul_gflops(device, dtype)
    seconds, peaks, deltas = run_shards(False)
    mm = (before + matmul_gflops(device, dtype)) / 2
    check_s = max(0.0, run_shards(True)[0] - seconds) if checks else None
    total = epochs + (schedule.epochs if v == "cold" else 0)
    peak_txt = " ".join(f"{p:.2f}" for p in peaks) + " GiB" if peaks else "n/a (cpu)"
    return Row(v, kernel, m, seconds / total * epochs, peak_txt, torch.cat(deltas), mm, check_s)


def print_table(rows: list[Row], epochs: int, n: int, work: dict[str, float]) -> None:
    """One line per computation and kernel; GFLOP/s counts the FLOPs per model and example of
    the computation's step (``work``, the same for every kernel of a row, so kernels compare
    by time)."""
    print()
    print(
        f"{'computation':17s} {'kernel':>9s} {'models':>6s} {'MFLOP/ex':>9s} {'s/epoch':>9s} "
        f"{'model-ep/s':>11s} {'GFLOP/s':>9s} {'matmul':>8s} {'÷ matmul':>9s} {'max |Δ−Δref|':>13s} "
        f"{'checks s':>9s}  peak memory (per shard)"
    )
    first: dict[str, torch.Tensor] = {}
    for r in rows:
        per_epoch = r.seconds / epochs
        rate = r.models / per_epoch
        fpe = work[r.label]
        achieved = rate * n * fpe / 1e9
        ref = first.setdefault(r.label, r.delta)
        diff = float((r.delta - ref).abs().max())
        print(
            f"{r.label:17s} {r.kernel:>9s} {r.models:6d} {fpe / 1e6:9.3g} {per_epoch:9.3f} "
            f"{rate:11.3f} "
            f"{achieved:9.2f} {r.matmul:8.1f} {achieved / r.matmul:9.1%} {diff:13.2e} "
            f"{'—' if r.checks is None else f'{r.checks:.2f}':>9s}  {r.peak_mem}"
        )


def print_gnh(problem, theta, ds, cfg, m, device) -> None:
    """One damped-GNH product on R = M right-hand sides, as LiSSA calls it (module docstring):
    the autodiff product (jvp/vjp) and, for an MLP, the batched-matmul one."""
    solver = cfg.influence.solver
    b = min(ds.n_train, getattr(solver, "batch_size", None) or cfg.train.batch_size or ds.n_train)
    x, t = ds.x_train[:b], ds.t_train[:b]
    v = torch.randn(m, theta.numel(), generator=torch.Generator().manual_seed(1)).to(theta)
    products = {"autodiff": lambda: autodiff_gnh_chunk(problem, theta, x, t, v)}
    shape = mlp_shape(problem)
    if shape is not None:
        products["mlp"] = lambda: mlpkernel.gnh_chunk(shape, problem.loss, theta, x, t, v)
    depth, repeats = getattr(solver, "depth", 0), getattr(solver, "repeats", 1)
    print()
    for name, product in products.items():
        with FlopCounterMode(display=False) as counter:
            product()
        flops = counter.get_total_flops()
        product()  # warm-up
        peak = matmul_gflops(device, theta.dtype)
        best = min(timed(product, device)[0] for _ in range(3))
        rate = flops / best / 1e9
        print(
            f"GNH product {name:>8s} (R = {m} right-hand sides, batch {b}): {best * 1e3:.1f} ms, "
            f"{flops / 1e9:.3g} GFLOP, {rate:.2f} GFLOP/s = {rate / peak:.1%} of the matmul "
            f"({peak:.1f} GFLOP/s)"
            + (
                f"; a LiSSA solve of depth {depth} × {repeats} repeat(s) ≈ "
                f"{best * depth * repeats:.0f} s of products"
                if depth
                else ""
            )
        )


def extrapolate(
    rows: list[Row], kernel: str, epochs: int, cfg, m: int, n: int, full_n: int
) -> None:
    rates = {r.label: r.seconds / epochs / r.models for r in rows if r.kernel == kernel}
    checks = sum(r.checks or 0.0 for r in rows if r.kernel == kernel)
    k = cfg.train.epochs
    half = max(1, round(k * cfg.retrain.epochs_fraction))
    warm = rates.get("warm")
    if warm is None:
        return
    lengths = {"cold": k + half, "warm": half, "proximal": half, "pbrf_paper": half}
    per = {v: rates.get(v, warm) for v in lengths}
    per |= {v: rates.get(v, rates.get("pbrf", warm)) for v in ("pbrf", "linearized_pbrf")}
    lengths |= {"pbrf": half, "linearized_pbrf": half}
    total = rates["base"] * k + sum(m * lengths[v] * per[v] for v in lengths) + checks
    print(
        f"\nwhole row with kernel {kernel} (K = {k}, M = {m}, PBRF length taken as K/2) with "
        f"N = {n}: ≈ {total / 3600:.2f} h of training on this device before curvature, influence "
        f"and aggregation; ≈ {total * full_n / n / 3600:.2f} h at N = {full_n} without "
        "--train-size (time ∝ N)"
    )


if __name__ == "__main__":
    main()
