#!/usr/bin/env bash
# The GPU check of issue 14, for a lent GPU machine (under 8 minutes): the CUDA tests, then
# bank-build throughput on CUDA one task at a time vs stacked (16 tasks, width 16, J = 100).
# Needs the CIFAR-100 copy (METAPRUNE_CIFAR100 or ../shared/data/cifar100/train.npz). Results land in
# $OUT (the device tool brings them back) or benchmarks/results/. Never run yet: no GPU was lent.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_pruners_many.py -k "device" 2>&1 | tail -5
timeout 300 python benchmarks/bench_many_tasks.py --device cuda --n-tasks 16 --stack 8 --widths 16 \
    --iterations 100 --class-pool 20 --out "$out/many_tasks_cuda"
