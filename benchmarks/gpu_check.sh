#!/usr/bin/env bash
# GPU check (at most ~5 minutes on one GPU): the CUDA test subset, then `vmgga register --device cuda`
# on a full-size 1 mm brain pair (fast and accurate: whole command and the report's stage timings, the
# dense stage being the one with a target: <= 0.3 s on an H200) and on the clinical-size CT (512x512x320).
# Run from the repository root:  bash benchmarks/gpu_check.sh [OUT_DIR]
# Needs ../shared/data (or VMGGA_DATA) for the two timed cases; skips them cleanly without it.
set -euo pipefail
out="${1:-${OUT:-/tmp/vmgga_gpu_check}}"
mkdir -p "$out"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA in torch'; print('torch', torch.__version__, torch.version.cuda)"

echo "== CUDA tests"
timeout 150 python -m pytest -q -p no:cacheprovider tests/field/test_cuda_device.py 2>&1 | tee "$out/tests.txt"

echo "== full-size 1 mm brain pair (240x240x155), fast and accurate, whole command"
timeout 120 python benchmarks/fullsize_brain.py --seeds 0 --pairs 1 --command-only --presets fast accurate \
    --threads 16 --device cuda --name gpu_fullsize_brain --workdir "$out/brain" 2>&1 | tee "$out/brain.txt"

echo "== clinical-size CT (512x512x320) to a 256^3 MR, fast"
timeout 90 python benchmarks/clinical_size.py --sizes 512 --threads 16 --device cuda \
    --name gpu_clinical_size 2>&1 | tee "$out/clinical.txt"
cp benchmarks/results/gpu_*.md benchmarks/results/gpu_*.json "$out/" 2>/dev/null || true
