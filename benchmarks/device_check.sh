#!/usr/bin/env bash
# One-command check of the GPU path on one NVIDIA GPU, in under 8 minutes:
#   1. bench_row.py --device cuda for mnist-mlp (MLP 2×1024) at the paper's shapes,
#   2. the same for one CNN row (mnist-lenet, LeNet-5) at the paper's shapes,
#      both with every training kernel (reference, vmap, loop; mlp for the MLP) so the fastest
#      can be chosen;
#      each prints the device's measured matmul, the share of it per variant and kernel, and the
#      peak memory of every shard beside the memory estimate;
#   3. one paper-scale row end to end (`pbrf run`) with reduced epochs and LiSSA depth.
# Usage: bash benchmarks/device_check.sh   (env: PYTHON, E2E_PRESET, E2E_EPOCHS, E2E_DEPTH)
# Exits 2 at once, with one line, when torch sees no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "device_check: '$PY' cannot import torch; set PYTHON to the project's interpreter" >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "device_check: no CUDA device visible to torch (torch.cuda.is_available() is False);" \
        "run this on a machine with one NVIDIA GPU" >&2
    exit 2
fi

start=$SECONDS
step() { echo; echo "=== [$((SECONDS - start)) s] $*"; }

step "device"
"$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}: {p.total_memory / 2**30:.1f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")'

step "mnist-mlp, paper shapes (N = 6000, M = 20, 2 epochs per variant)"
timeout 170 "$PY" benchmarks/bench_row.py --preset mnist-mlp --scale paper --device cuda \
    --epochs 2 --variants warm,pbrf,linearized_pbrf --kernels reference,vmap,loop,mlp

step "mnist-lenet (CNN), paper shapes (2 epochs per variant)"
timeout 170 "$PY" benchmarks/bench_row.py --preset mnist-lenet --scale paper --device cuda \
    --epochs 2 --variants warm,pbrf,linearized_pbrf --kernels reference,vmap,loop

preset=${E2E_PRESET:-concrete-mlp}
epochs=${E2E_EPOCHS:-20}
depth=${E2E_DEPTH:-500}
step "$preset end to end at the paper's scale, train.epochs=$epochs, LiSSA depth $depth"
out=runs/device-check-$preset
timeout 150 "$PY" -m flows.cli run "$preset" --scale paper --device cuda --refresh --out "$out" \
    --set "train.epochs=$epochs" --set "influence.solver.depth=$depth" \
    || echo "device_check: end-to-end run of $preset failed (exit $?); if its data files" \
        "are missing, copy data/ onto this machine or set E2E_PRESET"

step "done in $((SECONDS - start)) s"
