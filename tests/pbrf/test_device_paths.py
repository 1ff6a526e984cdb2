"""What of the GPU path a CPU can check: every kernel's step keeps its tensors on the parameters'
device and dtype (run on PyTorch's ``meta`` device, where a tensor created on the wrong device
fails as it would on CUDA), the benchmark's memory budget and shard sizing, and the prepared
GPU check's fail-fast line when no CUDA device is present."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from repo_root import REPO as ROOT

from pbrf.kernels import make_stepper
from pbrf.losses import get_loss
from pbrf.models import build_model
from pbrf.objectives import Batch, removal_weights
from pbrf.optim import FirstOrderOptimizer
from pbrf.params import flat_params
from pbrf.problem import Problem
from pbrf.responses import variant_objective
from pbrf.study.memory import GiB, retrain_memory, shards_for
from pbrf.study.presets import load_preset

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_row

META = torch.device("meta")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel", ["reference", "vmap", "loop"])
@pytest.mark.parametrize("variant", ["warm", "proximal", "pbrf", "linearized_pbrf"])
def test_steps_stay_on_the_parameters_device_and_dtype(variant, kernel, dtype):
    model = build_model("mlp", input_shape=(7,), output_dim=3, seed=0, width=5, depth=2)
    model = model.to(device=META, dtype=dtype)
    problem = Problem.from_module(model, get_loss("cross_entropy"))
    theta = flat_params(model)
    x = torch.empty(10, 7, device=META, dtype=dtype)
    t = torch.zeros(10, dtype=torch.long, device=META)
    removed = torch.zeros(2, 1, dtype=torch.long, device=META)
    ref, _, prepare = variant_objective(variant, problem, theta, 0.1, 0.01)
    stepper = make_stepper(variant, problem, theta, 0.1, 0.01, kernel, ref)
    batch = Batch(x[:4], t[:4], 4)
    batch = prepare(batch) if prepare is not None else batch
    w = removal_weights(torch.arange(4, device=META), removed, 10, 0.1).to(dtype)
    delta = torch.zeros(2, theta.numel(), device=META, dtype=dtype)
    grads, values = stepper.grad_and_value(delta, batch, w, x[removed], t[removed])
    for out in (grads, values, stepper.value(delta, batch, w, x[removed], t[removed])):
        assert out.device == META and out.dtype == dtype
    FirstOrderOptimizer("momentum").step_(delta, grads, 0.1)
    assert delta.device == META


def test_benchmark_budget_and_shards_fit_the_budget():
    cfg = load_preset("mnist-mlp", {}, "paper")
    mem = retrain_memory(cfg)
    assert bench_row.budget_bytes(torch.device("cpu"), 2.0) == 2 * GiB
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert bench_row.budget_bytes(torch.device("cpu"), None) == ram
    for budget_gb in (0.5, 0.9, 4.0, 141.0):  # an H200 has 141 GB
        budget = budget_gb * GiB
        shards = shards_for(mem, 20, budget)
        largest = math.ceil(20 / shards)
        assert mem.total(largest) <= budget
        if shards > 1:  # the fewest: one shard fewer would not fit
            assert mem.total(math.ceil(20 / (shards - 1))) > 0.6 * budget


@pytest.mark.slow  # a subprocess
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_device_check_fails_fast_with_one_line_without_cuda():
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert out.stdout == ""
