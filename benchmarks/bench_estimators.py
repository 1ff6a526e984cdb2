"""Every influence estimator on the default study's model: cost and agreement with the exact solve.

Run ``python benchmarks/bench_estimators.py`` (``--quick`` for a smaller model, ``--help`` for the
flags). The set-up is the ``digits-mlp`` preset: a 64-128-128-10 ReLU MLP on scikit-learn digits
(N = 1437), 100 epochs of plain SGD (lr 0.1, batch 128, the pipeline's batch order), cross-entropy,
no weight decay; M = 20 single-example removals and P = 100 test points drawn as the pipeline's
``select`` step draws them (seeded permutations, seed 0); damping λ = 1e-3, GNH curvature, float32.
Stateless SGD run in chunks of ``--checkpoint-every`` epochs equals one run; the iterate at the
start of each chunk is a TracIn checkpoint (lr 0.1, ``visits`` = epochs in the chunk, B = 128).

Every estimator runs through :func:`pbrf.estimators.run_estimator` on the same θˢ, removals and
test points, after one untimed warm-up call. Printed per estimator: wall time, peak memory
(resident set size sampled every 2 ms above the size at the call's start; see
:mod:`pbrf.estimators._measure`), and the agreement of its predicted test-loss changes (M,) with
those of the reference (``--reference``, default the exact damped solve): Pearson, Spearman, and
the relative error ``‖Δθ − Δθ_ref‖ / ‖Δθ_ref‖`` of the parameter responses where both exist.
``grad_cos`` is a cosine (no loss units): read only its Spearman. No number is asserted.

``--quick``: hidden width 32 (d = 3,466 instead of 26,122), 20 epochs, smaller TRAK/Arnoldi/CG
budgets; about a minute on one core. The full run is dominated by the exact solve (now the
float64 dual solve through the (N·r)² kernel, 1.25 GiB: 270–440 s on the shared 2-core machine
under heavy load, against 10 min and 5.4 GB for the former dense Cholesky of the d × d system;
everything else together about 2.5 min).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch

from pbrf.data import load_dataset
from pbrf.estimators import (
    ESTIMATOR_NAMES,
    Checkpoint,
    Estimate,
    EstimatorInputs,
    get_estimator,
    run_estimator,
)
from pbrf.losses import get_loss
from pbrf.metrics import pearson, spearman
from pbrf.models import build_model
from pbrf.params import flat_params, load_flat_
from pbrf.problem import Problem
from pbrf.responses import variant_objective
from pbrf.schedule import epoch_orders
from pbrf.study.config import DataConfig
from pbrf.trainer import SGDSettings, train_stacked

LR, BATCH_SIZE, SEED = 0.1, 128, 0


def settings_for(quick: bool) -> dict[str, dict[str, Any]]:
    """Each estimator's settings in the benchmark (LiSSA as the digits-mlp preset runs it)."""
    return {
        "exact": {"name": "exact"},
        "cg": {"name": "cg", "max_iter": 100 if quick else 300, "tol": 1e-6},
        "lissa": {"name": "lissa", "depth": 300, "repeats": 1, "batch_size": None},
        "arnoldi": {
            "name": "arnoldi",
            "rank": 20 if quick else 50,
            "iterations": 40 if quick else 100,
        },
        "kfac": {"name": "kfac"},
        "ekfac": {"name": "ekfac"},
        "trak": {"name": "trak", "dim": 512 if quick else 2048},
        "tracin": {"name": "tracin"},
        "grad_dot": {"name": "grad_dot"},
        "grad_cos": {"name": "grad_cos"},
    }


def choose(n: int, count: int, seed: int) -> torch.Tensor:
    """As the pipeline's ``select`` step: a seeded permutation's prefix."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]


def build_inputs(args: argparse.Namespace) -> tuple[EstimatorInputs, dict[str, Any]]:
    dtype = getattr(torch, args.dtype)
    ds = load_dataset(DataConfig(name="digits")).to("cpu", dtype)
    width, epochs = (32, 20) if args.quick else (128, 100)
    model = build_model(
        "mlp", input_shape=ds.input_shape, output_dim=ds.output_dim, width=width, depth=2, seed=0
    ).to(dtype)
    problem = Problem.from_module(model, get_loss(ds.default_loss), weight_decay=0.0)
    theta0 = flat_params(model)
    objective, _, _ = variant_objective("cold", problem, theta0, 0.0, 0.0)
    orders = epoch_orders(ds.n_train, SEED, range(epochs))
    sgd = SGDSettings(optimizer="sgd", lr=LR, batch_size=BATCH_SIZE)
    none = torch.empty(1, 0, dtype=torch.long)
    theta, checkpoints = theta0[None], []
    start = time.perf_counter()
    for first in range(0, epochs, args.checkpoint_every):
        chunk = list(orders[first : first + args.checkpoint_every])
        checkpoints.append(Checkpoint(theta[0].clone(), lr=LR, visits=float(len(chunk))))
        theta = train_stacked(
            objective,
            theta,
            ds.x_train,
            ds.t_train,
            chunk,
            sgd,
            removed=none,
            epsilon=0.0,
            first_epoch=first,
        ).theta
    train_s = time.perf_counter() - start
    theta_s = theta[0]
    load_flat_(model, theta_s)
    test = choose(ds.x_test.shape[0], args.test_points, SEED)
    inputs = EstimatorInputs(
        problem=problem,
        theta=theta_s,
        x_train=ds.x_train,
        t_train=ds.t_train,
        removed=choose(ds.n_train, args.removals, SEED)[:, None],
        x_test=ds.x_test[test],
        t_test=ds.t_test[test],
        damping=args.damping,
        curvature="gnh",
        checkpoints=tuple(checkpoints),
        train_batch_size=BATCH_SIZE,
        module=model,
    )
    meta = {"d": theta_s.numel(), "n": ds.n_train, "epochs": epochs, "train_s": train_s}
    return inputs, meta


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _notes(est: Estimate) -> str:
    info = est.info
    notes = list(info.get("warnings") or [])
    if not info.get("converged", True) and not notes:
        notes.append("not converged")
    for key in ("solver_iterations", "solver_horizon", "rank", "dim", "checkpoints"):
        if key in info:
            notes.append(f"{key.removeprefix('solver_')}={_fmt(info[key], '.4g')}")
    return "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model, small budgets")
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATOR_NAMES))
    parser.add_argument("--reference", default="exact")
    parser.add_argument("--removals", type=int, default=20)
    parser.add_argument("--test-points", type=int, default=100)
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--checkpoint-every", type=int, default=10, help="epochs per checkpoint")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    inputs, meta = build_inputs(args)
    print(
        f"digits MLP: d = {meta['d']}, N = {meta['n']}, {meta['epochs']} epochs of SGD "
        f"({meta['train_s']:.1f} s), M = {inputs.num_removals}, P = {inputs.x_test.shape[0]}, "
        f"λ = {inputs.damping:g}, {args.dtype}, {args.threads} thread(s), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    run_estimator({"name": "grad_dot"}, inputs)  # warm-up: first torch.func calls are slow
    settings = settings_for(args.quick)
    names = [args.reference, *(n for n in args.estimators if n != args.reference)]
    results: dict[str, Estimate | str] = {}
    for name in names:
        try:
            get_estimator(name)
        except ImportError as err:
            results[name] = f"unavailable ({err})"
            continue
        results[name] = run_estimator(settings[name], inputs)
        est = results[name]
        print(f"  {name}: {est.info['wall_time_s']:.1f} s", flush=True)
    ref = results[args.reference]
    if isinstance(ref, str):
        raise SystemExit(f"reference {args.reference!r} is {ref}")

    header = "| estimator | wall s | peak MB | Pearson | Spearman | Δθ rel. err | notes |"
    print(f"\nagainst {args.reference}:\n\n{header}\n|---|---:|---:|---:|---:|---:|---|")
    for name, est in results.items():
        if isinstance(est, str):
            print(f"| {name} | | | | | | {est} |")
            continue
        err = None
        if est.param_response is not None and ref.param_response is not None:
            err = float(
                (est.param_response - ref.param_response).norm() / ref.param_response.norm()
            )
        print(
            f"| {name} | {est.info['wall_time_s']:.2f} | {_fmt(est.info['peak_memory_mb'], '.0f')} "
            f"| {pearson(est.predicted_change, ref.predicted_change):.3f} "
            f"| {spearman(est.predicted_change, ref.predicted_change):.3f} "
            f"| {_fmt(err, '.3f')} | {_notes(est)} |"
        )


if __name__ == "__main__":
    main()
