#!/usr/bin/env bash
# The recipe of the bundled demo weights: DnCNN, EDSR and UNet (default sizes) trained one after
# another on the embedded sample set (`--data sample`) on the CPU, then exported as float16
# inference-only files weights/{dncnn,edsr,unet}.pt. Resumable: run it again after an interruption
# and every stage continues from its outputs/demo_training/<model>/last.pt (finished ones return at
# once). Logs: outputs/train_logs/<model>.log. Usage: nohup bash weights/train_demo.sh &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=outputs/demo_training
LOGS=outputs/train_logs
mkdir -p "$LOGS"
export TQDM_MININTERVAL=30  # progress bars refresh every 30 s in the logs
# Threads sleep instead of spinning while waiting: on a shared 2-core machine spinning OpenMP threads
# made training steps several times slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# bfloat16 autocast + channels-last: about 3x the float32 speed on an AVX512-BF16 CPU (bench/bench_train.py)
COMMON=(--data sample --device cpu --amp --amp-dtype bfloat16 --channels-last --early-stop 0 --seed 0 --resume)

"$PY" -m helpers train dncnn "${COMMON[@]}" --out "$RUNS/dncnn" --epochs 30 --steps-per-epoch 40 \
    --batch-size 16 --patch 50 --sigma 0,55 --lr 1e-3 >>"$LOGS/dncnn.log" 2>&1
"$PY" -m helpers train edsr "${COMMON[@]}" --out "$RUNS/edsr" --epochs 10 --steps-per-epoch 25 \
    --batch-size 16 --patch 48 --lr 5e-4 >>"$LOGS/edsr.log" 2>&1
"$PY" -m helpers train unet "${COMMON[@]}" --out "$RUNS/unet" --epochs 10 --steps-per-epoch 30 \
    --batch-size 8 --patch 96 --lr 3e-4 >>"$LOGS/unet.log" 2>&1

"$PY" - "$RUNS" <<'PYTHON'
import sys
from pathlib import Path

from helpers.checkpoint import export_weights, load_checkpoint, load_model

runs = Path(sys.argv[1])
for name in ("dncnn", "edsr", "unet"):
    best = runs / name / "best.pt"
    history = load_checkpoint(best)["history"]
    export_weights(load_model(best, expected_name=name), Path("weights") / f"{name}.pt",
                   history=history, source="demo: sample set, CPU (weights/README.md)")
    print(f"weights/{name}.pt <- {best}: val PSNR {history['val_psnr'][-1]:.2f} dB")
PYTHON
