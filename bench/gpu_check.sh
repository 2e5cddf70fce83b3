#!/usr/bin/env bash
# The GPU paths on a bare CUDA machine with torch and transformers (see bench/gpu_check.py): one table.
#   bash bench/gpu_check.sh [OUT.md]      # default gpu_check.md; stops after 8 minutes
# spell is imported from this checkout (no install): its engine modules need only torch and transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, transformers; assert torch.cuda.is_available(), 'no CUDA device'"
timeout 480 python bench/gpu_check.py --out "${1:-gpu_check.md}"
