#!/usr/bin/env bash
# The main job on the bundled demo speech: install if needed, train experiment=demo, generate
# 2 s of speech-like audio from it, then let the shipped vocoder re-synthesise a held-out demo
# utterance from its log-mel (our best audio so far); print both wavs' paths. How long it
# takes: README.md.
# Extra arguments go to wavenet-train, e.g. `bash scripts/demo.sh train.max_steps=200`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
run_dir=runs/demo/$(date +%Y-%m-%d_%H-%M-%S)
.venv/bin/wavenet-train experiment=demo hydra.run.dir="$run_dir" "$@"
.venv/bin/wavenet-generate checkpoint="$run_dir/checkpoints/best.pt" seconds=2 \
  out="$run_dir/generated"
# A file the shipped vocoder never trained on (held out by the split it was trained with).
.venv/bin/wavenet-generate checkpoint=data/pretrained/asterisk4-vocoder.pt \
  mel_from=data/demo/wavs/ast_en_US_f_Allison_agent-newlocation.flac out="$run_dir/generated"
