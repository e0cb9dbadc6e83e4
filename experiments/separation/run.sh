#!/usr/bin/env bash
# The two comparable runs of experiments/separation/README.md (same seed, data and steps):
# train, test on the embedded test pieces, then full-track evaluation on the real fixtures;
# both run in one hold of the shared lock (about 8 minutes on the 2-core CPU machine).
#   experiments/separation/run.sh                  # both, under the lock
#   experiments/separation/run.sh one <experiment> # one, without the lock
#   STEPS=100 experiments/separation/run.sh        # longer training
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/separation}
FIX=${MIR_FIXTURES:-../shared/fixtures}
mkdir -p "$OUT"
if [ "${1:-}" = one ]; then
  exp=$2
  .venv/bin/python -m mir.train experiment="$exp" logger=[csv] trainer.max_epochs=1 \
    data.steps_per_epoch=${STEPS:-60} data.batch_size=4 ++trainer.limit_val_batches=2 \
    trainer.enable_progress_bar=false task.separation.unet.per_source=false \
    hydra.run.dir="$OUT/$exp"
  ck=$(ls "$OUT/$exp"/checkpoints/epoch*.ckpt | head -1)
  .venv/bin/python -m mir.evaluate ckpt="$ck" data=musdb18 split=train \
    data.datasets.musdb18.root="$FIX/musdb18" output="$OUT/$exp/eval-musdb18"
  .venv/bin/python -m mir.evaluate ckpt="$ck" data=medleydb split=train \
    data.datasets.medleydb.root="$FIX/medleydb" output="$OUT/$exp/eval-medleydb"
  exit 0
fi
if [ "${1:-}" = all ]; then
  for exp in ${EXPERIMENTS:-jansson_unet jansson_unet_hcqt}; do
    "$0" one "$exp" > "$OUT/$exp.log" 2>&1
  done
  exit 0
fi
flock /tmp/mir-heavy.lock "$0" all
