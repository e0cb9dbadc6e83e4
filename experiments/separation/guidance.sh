#!/usr/bin/env bash
# Does HCQT guidance help? The U-Net and the HCQT-guided U-Net trained on the same pooled
# data (experiment=jansson_unet_pool on the fixtures: the embedded set with the formant
# singer, MedleyDB's MusicDelta_Reggae, vocadito_1, MDB-Drums' MusicDelta_Punk drum stem)
# with the same steps, for several seeds (initialisation and excerpts; the embedded pieces
# stay those of seed 0). Each run is tested on the embedded test pieces and evaluated on the
# MUSDB18 7-s sample (never trained on; mono, 22050 Hz, by mir.evaluate). The guided runs
# use a lighter HCQT (harmonics 1-3, 36 bins/octave) so that they fit the 2-core CPU; the
# plain U-Net does not read the HCQT. THREADS (default 2) fixes torch's thread count, so a
# seed's run is repeatable on one machine.
#   experiments/separation/guidance.sh                  # under the shared lock
#   SEEDS="0 1 2" STEPS=400 experiments/separation/guidance.sh
#   python experiments/separation/seeds.py outputs/separation-guidance
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/separation-guidance}
FIX=${MIR_FIXTURES:-../shared/fixtures}
PY=${PY:-.venv/bin/python}
export MEDLEYDB_PATH=$FIX/medleydb VOCADITO_PATH=$FIX/vocadito MDB_DRUMS_PATH=$FIX/mdb_drums
if [ "${1:-}" != locked ]; then
  mkdir -p "$OUT"
  exec flock /tmp/mir-heavy.lock "$0" locked
fi
common=(experiment=jansson_unet_pool '~data.datasets.musdb18' logger=[csv] trainer.max_epochs=1
  data.steps_per_epoch=${STEPS:-400} data.batch_size=4 ++trainer.limit_val_batches=2
  trainer.enable_progress_bar=false task.separation.unet.per_source=false
  'frontend.harmonics=[1,2,3]' frontend.bins_per_octave=36 data.datasets.embedded.seed=0
  data.datasets.embedded.voice=formant threads=${THREADS:-2})
for seed in ${SEEDS:-0 1}; do
  for variant in unet guided; do
    run=$OUT/$variant-seed$seed
    [ -f "$run/eval-musdb18/per_track.json" ] && continue
    extra=()
    [ $variant = guided ] && extra=(task=[separation,vocal] task.separation.unet.guided=true)
    $PY -m mir.train "${common[@]}" "${extra[@]}" seed=$seed hydra.run.dir="$run" > "$run.log" 2>&1
    $PY -m mir.evaluate ckpt="$run/checkpoints/last.ckpt" data=musdb18 split=train threads=${THREADS:-2} \
      data.datasets.musdb18.root="$FIX/musdb18" output="$run/eval-musdb18" >> "$run.log" 2>&1
  done
done
