#!/usr/bin/env bash
# The U-Net trained with real singing: experiment=jansson_unet_pool on the fixtures (the
# embedded set, MedleyDB's MusicDelta_Reggae, vocadito_1 and MDB-Drums' MusicDelta_Punk
# drum stem; MUSDB18 left out, its 7-s sample is the test), then the MUSDB18 sample
# separated in stereo at 44.1 kHz and scored with SI-SDR (benchmarks/peer_nussl.py).
#   experiments/separation/pool.sh NAME STEPS_PER_EPOCH [overrides...]
#   EPOCHS=5 experiments/separation/pool.sh fm5k 1000 data.datasets.embedded.voice=formant
# Runs land in outputs/separation-pool/NAME (under the shared lock).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1 steps=$2
shift 2
OUT=${OUT:-outputs/separation-pool}
FIX=${MIR_FIXTURES:-../shared/fixtures}
PY=${PY:-.venv/bin/python}
export MEDLEYDB_PATH=$FIX/medleydb VOCADITO_PATH=$FIX/vocadito MDB_DRUMS_PATH=$FIX/mdb_drums
flock /tmp/mir-heavy.lock $PY -m mir.train experiment=jansson_unet_pool '~data.datasets.musdb18' \
  logger=[csv] trainer.max_epochs=${EPOCHS:-1} data.steps_per_epoch=$steps data.batch_size=4 \
  ++trainer.limit_val_batches=2 trainer.enable_progress_bar=false \
  task.separation.unet.per_source=false hydra.run.dir="$OUT/$name" "$@"
$PY benchmarks/peer_nussl.py write --ckpt "$OUT/$name/checkpoints/last.ckpt" \
  --out-dir "$OUT/$name/musdb18-estimates" --mus-root "$FIX/musdb18" --score
