#!/usr/bin/env bash
# Issue 27's race on this CPU: the gated (NAFNet) block at two sizes, trained from scratch, beside the plain UNet
# continued from the shipped v8 weights, side by side (one thread each, so they share the machine equally), on v8's
# `crisp` data and degradations (weights/train_demo.sh: BSD432 + Urban100 photos shrunk by up to 4x, half the blurs real
# Levin kernels, 20% non-uniform, 30% of inputs left sharp), batch 4 of 112x112, bfloat16 autocast, each with its own
# learning rate, halved after eight validations (400 steps) without a better one. Each run is stopped after
# RACE_MINUTES (default 32) of wall time; `bench.race_curves` then compares them at equal wall time and at equal steps
# from their histories.
# Why the plain UNet continues from v8 instead of starting from scratch: from scratch under this recipe it never left
# the identity (two tries, 650 and 150 steps, validation gain 0.00 dB): the ReLUs of its last decoder level, the only
# input of its zero-initialised 1x1 head, die within the first steps (53% active at step 0, 21% at step 40 in float32
# and bfloat16 alike, 0.9% at step 650), so the head has nothing left to learn from. v8 is also the bar to beat.
# A first try also halved every rate after two flat validations: a gated network still at the identity had its rate
# halved every 100 steps. Both tries' state: .../race27_try1.
# State and logs live outside the work tree: $IMAGE_REPAIR_CACHE (default ~/.cache/image-repair-and-restoration)/race27/.
# Usage: nohup bash bench/race_unet_blocks.sh train [NAME ...] &   (the runs, or those named, RACE_MINUTES each)
#        bash bench/race_unet_blocks.sh eval [NAME ...] (each run's best.pt beside v8's DnCNN and EDSR: its own deblur
#                                                        ramp calibrated, then bench.eval_shared's deblur and clean rows)
#        .venv/bin/python -m bench.race_curves         (table and curves from the histories)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RACE=${IMAGE_REPAIR_CACHE:-$HOME/.cache/image-repair-and-restoration}/race27
TRAIN=${TRAIN_DATA:-../shared/data/train}
MINUTES=${RACE_MINUTES:-32}
# name|what it starts from (--init) or builds (--arch)|learning rate: v8's crisp fine-tune's 1e-4 for the plain block; the
# gated block is meant to take higher ones (the paper: 1e-3 at batch 32; 1e-3 at batch 4 left the first try flat)
CONTENDERS=(
    "plain|--init weights/unet.pt|1e-4"
    "nafnet16|--arch block=nafnet,width=16,enc_blocks=1-1-1-4,middle_blocks=1,dec_blocks=1-1-1-1|5e-4"
    "nafnet32|--arch block=nafnet,width=32,enc_blocks=1-1-1-8,middle_blocks=1,dec_blocks=1-1-1-1|5e-4"
)
mkdir -p "$RACE/logs"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE TQDM_MININTERVAL=60

if [ "${1:-train}" = train ]; then
    for contender in "${CONTENDERS[@]}"; do
        IFS="|" read -r name start lr <<<"$contender"
        [ $# -le 1 ] || [[ " ${*:2} " == *" $name "* ]] || continue
        # timeout ends the run mid-epoch; its last finished epoch is in last.pt (written atomically)
        # shellcheck disable=SC2086
        timeout "${MINUTES}m" "$PY" -m helpers train unet $start --device cpu --amp --seed 0 \
            --early-stop 0 --epochs 1000 --steps-per-epoch 50 --plateau-patience 8 --val-patch 96 --val-items 32 \
            --cascade-weights none --kernels "$TRAIN/kernels/levin09.npz" \
            --data "photos:$TRAIN/BSDS432=0.3,$TRAIN/Urban100=0.7" --out "$RACE/$name" --batch-size 4 --patch 112 \
            --lr "$lr" --min-scale 0.25 --kernel-fraction 0.5 --nonuniform-fraction 0.2 --sharp-fraction 0.3 \
            --colour-augment 0.2 >>"$RACE/logs/$name.log" 2>&1 &
    done
    wait || true
    exit
fi
if [ "$1" = eval ]; then
    for contender in "${CONTENDERS[@]}"; do
        IFS="|" read -r name _ _ <<<"$contender"
        [ $# -le 1 ] || [[ " ${*:2} " == *" $name "* ]] || continue
        weights=$RACE/$name/weights
        mkdir -p "$weights"
        cp weights/dncnn.pt weights/edsr.pt "$weights/"
        "$PY" -c "import sys; from helpers.checkpoint import export_weights, load_checkpoint, load_model
export_weights(load_model(sys.argv[1], expected_name='unet'), sys.argv[2], history=load_checkpoint(sys.argv[1])['history'],
               source='issue 27 race (bench/race_unet_blocks.sh): ' + sys.argv[3])" "$RACE/$name/best.pt" "$weights/unet.pt" "$name"
        "$PY" -m helpers calibrate-deblur "$weights/unet.pt" --photos "$TRAIN/BSDS432" "$TRAIN/Urban100" \
            --kernels "$TRAIN/kernels/levin09.npz" --limit 60 --device cpu -o "$weights/unet.pt" >"$RACE/logs/$name.calibrate.log" 2>&1
        "$PY" -m bench.eval_shared --weights "$weights" --only cascade,kernels,clean --out "$RACE/$name/eval" \
            >"$RACE/logs/$name.eval.log" 2>&1
        echo "$name: $RACE/$name/eval/report.md"
    done
    exit
fi
echo "usage: bash bench/race_unet_blocks.sh train|eval" >&2
exit 2
