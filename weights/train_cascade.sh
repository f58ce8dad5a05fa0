#!/usr/bin/env bash
# The recipe of the cascade-fine-tuned demo weights: the stage-wise v5 files (commit 3e7b925, weights/train_demo.sh)
# fine-tuned as one cascade, DnCNN -> UNet -> EDSR -> fixed unsharp mask, on the loss at the 2x output plus the
# per-stage auxiliary losses (helpers/cascade.py), on BSD432 + Urban100 photos degraded on the fly in the
# cascade's order (blur at high resolution, downscale, noise), on a 2-core CPU with one thread.
# 30% of patches get no noise and 30% no blur, so the cascade learns to leave clean, sharp frames alone.
# State lives in the cache folder ($IMAGE_REPAIR_CACHE, default ~/.cache/image-repair-and-restoration)/
# demo_training_v5/cascade, log in .../logs/cascade.log: run again after an interruption to resume from last.pt;
# delete that folder to restart from nothing.
# Usage: nohup bash weights/train_cascade.sh &        bash weights/train_cascade.sh export   (export only)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CACHE=${IMAGE_REPAIR_CACHE:-$HOME/.cache/image-repair-and-restoration}
RUNS=$CACHE/demo_training_v5
LOGS=$RUNS/logs
STAGEWISE=$RUNS/v5_stagewise_weights
TRAIN=${TRAIN_DATA:-../shared/data/train}
mkdir -p "$LOGS" "$STAGEWISE"
for name in dncnn unet edsr; do
    [ -s "$STAGEWISE/$name.pt" ] || git show "3e7b925:weights/$name.pt" > "$STAGEWISE/$name.pt"
done
export TQDM_MININTERVAL=60 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
if [ "${1:-train}" != export ]; then
    "$PY" -m helpers train cascade --device cpu --seed 0 --resume --early-stop 0 --plateau-patience 3 \
        --data "photos:$TRAIN/BSDS432=0.4,$TRAIN/Urban100=0.6" --init "$STAGEWISE" --out "$RUNS/cascade" \
        --epochs "${CASCADE_EPOCHS:-24}" --steps-per-epoch 50 --batch-size 4 --patch 64 --lr 5e-5 \
        --kernels "$TRAIN/kernels/levin09.npz" --kernel-fraction 0.5 --nonuniform-fraction 0.2 \
        --clean-fraction 0.3 --sharp-fraction 0.3 --downscale-kernels area,bicubic,opencv-bicubic \
        --val-patch 96 --val-items 32 >>"$LOGS/cascade.log" 2>&1
fi
for name in dncnn unet edsr; do  # `train cascade` exports its best epoch, with the record of what it started from
    cp "$RUNS/cascade/weights/$name.pt" "weights/$name.pt"
done
