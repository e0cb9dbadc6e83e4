#!/usr/bin/env bash
# Does the formant singer make the embedded set teach real singing? The U-Net trained on the
# embedded data only (no real audio), with the GM voice patch or the formant singer as the
# vocal line, the same steps and seed; then the MUSDB18 7-s sample separated in stereo and
# scored with SI-SDR (benchmarks/peer_nussl.py). Under the shared lock.
#   STEPS=800 experiments/separation/voice_ablation.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/separation-voice}
FIX=${MIR_FIXTURES:-../shared/fixtures}
PY=${PY:-.venv/bin/python}
if [ "${1:-}" != locked ]; then
  mkdir -p "$OUT"
  exec flock /tmp/mir-heavy.lock "$0" locked
fi
for voice in gm formant; do
  run=$OUT/$voice
  $PY -m mir.train experiment=jansson_unet logger=[csv] trainer.max_epochs=1 \
    data.steps_per_epoch=${STEPS:-800} data.batch_size=4 ++trainer.limit_val_batches=2 \
    trainer.enable_progress_bar=false task.separation.unet.per_source=false \
    data.datasets.embedded.voice=$voice hydra.run.dir="$run" > "$run.log" 2>&1
  $PY benchmarks/peer_nussl.py write --ckpt "$run/checkpoints/last.ckpt" \
    --out-dir "$run/musdb18-estimates" --mus-root "$FIX/musdb18" --score | tail -1
done
