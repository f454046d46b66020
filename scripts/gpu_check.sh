#!/usr/bin/env bash
# The prepared GPU check of issue 37 (scripts/gpu_check.py): mnist_cnn, the cats/dogs small CNN and ResNet50
# fine-tuning (random weights) at 180x180 on the fast path, each with images/s, GPU utilisation and memory, and
# the loader's images/s beside the model's. Under 5 minutes on one CUDA GPU.
#   bash scripts/gpu_check.sh                 # CNN_ZOO_DATA_DIR with MNIST/raw and cats_and_dogs_small, else generated
#   bash scripts/gpu_check.sh --device cpu --steps 3 --batches 2 --images 32 --batch-size 4   # CPU smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
export CNN_ZOO_PROGRESS=0
export CNN_ZOO_CACHE_DIR="${CNN_ZOO_CACHE_DIR:-$(mktemp -d /tmp/gpu_check_cache.XXXX)}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout 290 python scripts/gpu_check.py "$@"
