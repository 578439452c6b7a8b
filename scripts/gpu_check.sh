#!/usr/bin/env bash
# GPU checks of the cached sampler (about 2 minutes on one GPU, under 5 with a cold start):
#   1. the CUDA tests of tests/sampling/test_kernels.py (cuda-graph equal to the reference
#      path draw for draw, batch 1 and 16, conditioned; its logits equal to the forward pass);
#   2. benchmark JSON lines for batch 1 and 16: the eager CachedSampler step (path reference)
#      against the same step captured as a CUDA graph (path cuda-graph).
# Usage: scripts/gpu_check.sh [PYTHON]    (default python3; needs torch with CUDA, numpy,
# pytest, pyyaml, tqdm, torchaudio; runs from the checkout without installing it: the test
# helpers import Hydra, omegaconf, soundfile and matplotlib only where a test uses them)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python3}}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name())"
status=0
timeout 180 "$PY" -m pytest -q -p no:cacheprovider tests/sampling/test_kernels.py -k cuda || status=$?
# wavenet-generate device=cuda (impl=cuda-graph through the command line), where the machine has
# the tools' packages (hydra-core, soundfile: `pip install -e .` where PyPI is reachable).
if "$PY" -c "import hydra, soundfile" 2>/dev/null; then
  timeout 180 "$PY" -m pytest -q -p no:cacheprovider tests/cli/test_generate.py -k device \
    || status=$?
else
  echo "skipped tests/cli/test_generate.py -k device: hydra-core or soundfile is not installed"
fi
for batch in 1 16; do
  timeout 90 "$PY" scripts/bench_generate.py --device cuda --impl reference cuda-graph \
    --batch "$batch" --samples 1000 --repeats 3
done
exit "$status"
