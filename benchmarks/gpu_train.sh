#!/usr/bin/env bash
# Train the VMGGA matcher on one GPU (configs/train_gpu.yaml, <= 8 min) and evaluate the result.
# NOT RUN YET (no GPU was lent). Usage, from the repository root, with ../shared/data present:
#   bash benchmarks/gpu_train.sh [OUTPUT_DIR]        (default: runs/gpu_v6; $OUT if set)
# Writes OUTPUT_DIR/vmgga_matcher.pt (with its record), curves, heldout_eval.{json,md},
# and the real-slice benchmark of the new weights next to the shipped ones'.
set -euo pipefail
out="${1:-${OUT:-runs}/gpu_v6}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
start=$(date +%s)
timeout 540 vmgga train --config configs/train_gpu.yaml --output "$out" --quiet 2>&1 | tail -n 20
echo "training + held-out evaluation: $(( $(date +%s) - start )) s"
cat "$out/heldout_eval.md"
threads=$(( $(nproc) < 8 ? $(nproc) : 8 ))
python benchmarks/matcher_2d_real.py --threads "$threads" --weights "$out/vmgga_matcher.pt" \
  --methods vmgga,vmgga-refine --name matcher_2d_real_gpu | tail -n 40
python benchmarks/matcher_2d_real.py --threads "$threads" --methods vmgga,vmgga-refine \
  --name matcher_2d_real_shipped_on_gpu_machine | tail -n 40
cp benchmarks/results/matcher_2d_real_gpu.* benchmarks/results/matcher_2d_real_shipped_on_gpu_machine.* "$out"/ 2>/dev/null || true
