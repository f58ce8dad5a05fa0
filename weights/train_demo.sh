#!/usr/bin/env bash
# The recipe of the bundled demo weights: DnCNN, EDSR and UNet (default sizes) trained on the embedded
# sample set (`--data sample`) on a 2-core CPU, one thread each, side by side; then each is exported
# as a float16 inference-only file weights/{dncnn,edsr,unet}.pt (the last epoch of the recoloured
# DnCNN and UNet phases, EDSR's best).
# Resumable: run it again after an interruption and every run continues from its
# outputs/demo_training/<model>/last.pt (finished ones return at once).
# Logs: outputs/train_logs/<model>.log.   Usage: nohup bash weights/train_demo.sh &
#                                          bash weights/train_demo.sh export   (export only)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=outputs/demo_training
LOGS=outputs/train_logs
mkdir -p "$LOGS"
export TQDM_MININTERVAL=30  # progress bars refresh every 30 s in the logs
# One thread per run, sleeping instead of spinning while waiting: three runs share two cores.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

COMMON=(--data sample --device cpu --early-stop 0 --seed 0 --resume --val-patch 128 --steps-per-epoch 100)
# bfloat16 autocast + channels-last pays for all three networks on an AVX512-BF16 CPU (bench/bench_train.py).
BF16=(--amp --amp-dtype bfloat16 --channels-last)
DNCNN=(dncnn "${COMMON[@]}" "${BF16[@]}" --patch 50 --sigma 0,55)

if [ "${1:-train}" != export ]; then
    # DnCNN in three phases: epochs 1-32 on noisy patches only; then a fresh optimiser from those weights
    # (--init) with batch 32, a more patient lr schedule and 10% noise-free patches, so that it also
    # learns to leave clean frames alone; then lr 1e-4 with half the patches recoloured (the sample set's
    # few colour photos had taught it to grey saturated colours) and 30% cut from blurry frames.
    { "$PY" -m helpers train "${DNCNN[@]}" --out "$RUNS/dncnn" --epochs 32 --batch-size 16 --lr 3e-4 \
      && "$PY" -m helpers train "${DNCNN[@]}" --out "$RUNS/dncnn2" --init "$RUNS/dncnn/last.pt" \
             --epochs 35 --batch-size 32 --lr 4e-4 --plateau-patience 8 --clean-fraction 0.1 \
      && "$PY" -m helpers train "${DNCNN[@]}" --out "$RUNS/dncnn3" --init "$RUNS/dncnn2/last.pt" \
             --epochs "${DNCNN_EPOCHS:-40}" --batch-size 32 --lr 1e-4 --plateau-patience 4 --clean-fraction 0.1 \
             --blurry-fraction 0.3 --colour-augment 0.5; \
    } >>"$LOGS/dncnn.log" 2>&1 &
    "$PY" -m helpers train edsr "${COMMON[@]}" "${BF16[@]}" --out "$RUNS/edsr" --epochs 12 \
        --batch-size 8 --patch 48 --lr 4e-4 >>"$LOGS/edsr.log" 2>&1 &
    # UNet in three phases: 47 epochs of batch 4 (the plateau schedule had cut the lr 16-fold by then: the
    # validation frames carry only strong blur, where gains are slow), then a fresh optimiser from the best
    # weights with batch 8 and a patient schedule, then half the patch pairs recoloured (channel order
    # and gains: phase 2's network lost 1.2 dB on McMaster with its channels reordered).
    UNET=(unet "${COMMON[@]}" "${BF16[@]}" --synthetic-blur 0.9)
    { "$PY" -m helpers train "${UNET[@]}" --out "$RUNS/unet" --epochs 47 --batch-size 4 --patch 128 --lr 5e-4 \
      && "$PY" -m helpers train "${UNET[@]}" --out "$RUNS/unet2" --init "$RUNS/unet/best.pt" \
             --epochs 72 --batch-size 8 --patch 96 --lr 3e-4 --plateau-patience 8 \
      && "$PY" -m helpers train "${UNET[@]}" --out "$RUNS/unet3" --init "$RUNS/unet2/last.pt" \
             --epochs "${UNET_EPOCHS:-53}" --batch-size 6 --patch 112 --lr 2e-4 --plateau-patience 6 --colour-augment 0.5; \
    } >>"$LOGS/unet.log" 2>&1 &
    wait
fi

"$PY" - "$RUNS" <<'PYTHON'
import sys
from pathlib import Path

from helpers.checkpoint import export_weights, load_checkpoint, load_model

runs = Path(sys.argv[1])
# The recoloured phases end at their lowest lr: their last.pt. Their validation crops (coffee and grass;
# strong stored blur for the UNet) cannot show colour generalisation: the UNet's best.pt was epoch 6 of 53.
for name, checkpoint in (("dncnn", "dncnn3/last.pt"), ("edsr", "edsr/best.pt"), ("unet", "unet3/last.pt")):
    path = runs / checkpoint
    history = load_checkpoint(path)["history"]
    export_weights(load_model(path, expected_name=name), Path("weights") / f"{name}.pt",
                   history=history, source="demo: sample set, CPU (weights/README.md)")
    print(f"weights/{name}.pt <- {path}: val PSNR {history['val_psnr'][-1]:.2f} dB after {len(history['val_psnr'])} epochs")
PYTHON
