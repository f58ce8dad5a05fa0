#!/usr/bin/env bash
# The recipe of the bundled demo weights v8: DnCNN, UNet and EDSR fine-tuned from the v4 weights (sample-set
# trained, see weights/README.md) on real photographs at their native resolution (`photos:` source: BSD432 +
# Urban100 from ../shared/data/train, degraded on the fly; real Levin et al. camera-shake kernels beside
# synthetic trajectories), on a 2-core CPU, one thread each, side by side (v5); then the UNet fine-tuned again
# with half of its inputs left sharp (`sharp` mode), EDSR's run continued with half of its inputs aliased (`v7`
# mode) and the UNet fine-tuned once more on crisper photos (`crisp` mode, SHARP_FRACTION=0.3); then each is
# exported as a float16 inference-only file weights/{dncnn,unet,edsr}.pt (EDSR: the average of its two runs) and
# the UNet's deblur gate calibrated on training photos (`python -m helpers calibrate-deblur`). From nothing:
# `nohup bash weights/train_demo.sh all &` (the three runs, then `sharp`, `v7` and `crisp`, then the export).
# State lives outside the work tree, in the cache folder ($IMAGE_REPAIR_CACHE, default
# ~/.cache/image-repair-and-restoration)/demo_training_v5/<model>/ with logs in .../logs/<model>.log:
# run the script again after an interruption and every run resumes from its last.pt; delete that folder to
# restart from nothing.
# Usage: nohup bash weights/train_demo.sh all &    (v8 from nothing, every step in order; run it again to resume)
#        nohup bash weights/train_demo.sh &        bash weights/train_demo.sh export   (export only)
#        nohup bash weights/train_demo.sh cascade &   (tried, not shipped: the v5 files fine-tuned as one cascade,
#        weights/CHANGELOG.md; state in .../demo_training_v5/cascade, exported to .../cascade/weights)
#        nohup bash weights/train_demo.sh sharp &     (the v5 UNet fine-tuned with more inputs left sharp)
#        nohup bash weights/train_demo.sh train edsr &   (one stage's run only: any of dncnn unet edsr)
#        nohup bash weights/train_demo.sh v7 &        (after v6: EDSR's run continued with more aliased inputs)
#        SHARP_FRACTION=0.3 nohup bash weights/train_demo.sh crisp &   (after v7: the UNet on crisper photos)
# The starting points are the v4 files, taken from git history (commit 60cb2c2) into $RUNS/v4_weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CACHE=${IMAGE_REPAIR_CACHE:-$HOME/.cache/image-repair-and-restoration}
RUNS=$CACHE/demo_training_v5
LOGS=$RUNS/logs
V4=$RUNS/v4_weights
TRAIN=${TRAIN_DATA:-../shared/data/train}
mkdir -p "$LOGS" "$V4"
for name in dncnn unet edsr; do
    [ -s "$V4/$name.pt" ] || git show "60cb2c2:weights/$name.pt" > "$V4/$name.pt"
done
export TQDM_MININTERVAL=60  # progress bars refresh every minute in the logs

if [ "${1:-train}" = cascade ]; then
    # The committed v5 files (commit 3e7b925) fine-tuned end to end on the loss at the 2x output plus the per-stage
    # auxiliary losses, patches degraded in the cascade's order; 30% get no noise and 30% no blur, so the cascade
    # learns to leave clean, sharp frames alone. One thread.
    STAGEWISE=$RUNS/v5_stagewise_weights
    mkdir -p "$STAGEWISE"
    for name in dncnn unet edsr; do
        [ -s "$STAGEWISE/$name.pt" ] || git show "3e7b925:weights/$name.pt" > "$STAGEWISE/$name.pt"
    done
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$PY" -m helpers train cascade --device cpu --seed 0 --resume \
        --early-stop 0 --plateau-patience 3 --data "photos:$TRAIN/BSDS432=0.4,$TRAIN/Urban100=0.6" \
        --init "$STAGEWISE" --out "$RUNS/cascade" --epochs "${CASCADE_EPOCHS:-24}" --steps-per-epoch 50 \
        --batch-size 4 --patch 64 --lr 5e-5 --kernels "$TRAIN/kernels/levin09.npz" --kernel-fraction 0.5 \
        --nonuniform-fraction 0.2 --clean-fraction 0.3 --sharp-fraction 0.3 \
        --downscale-kernels area,bicubic,opencv-bicubic --val-patch 96 --val-items 32 >>"$LOGS/cascade.log" 2>&1
    exit
fi
if [ "${1:-train}" = sharp ]; then
    # After v5: the v5 UNet run's best.pt fine-tuned with a larger share of its inputs left sharp (SHARP_FRACTION,
    # default 0.5), so that it leaves sharp frames alone (v5's 10% sharp share cost 1.4 dB on clean photos,
    # bench.eval_shared). One thread; state in .../demo_training_v5/unet_sharp_<fraction>.
    SHARP=${SHARP_FRACTION:-0.5}
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$PY" -m helpers train unet --device cpu --early-stop 0 --seed 1 \
        --resume --val-patch 96 --val-items 32 --steps-per-epoch 50 --plateau-patience 2 \
        --kernels "$TRAIN/kernels/levin09.npz" --data "photos:$TRAIN/BSDS432=0.4,$TRAIN/Urban100=0.6" \
        --out "$RUNS/unet_sharp_$SHARP" --init "$RUNS/unet/best.pt" --epochs "${UNET_EPOCHS:-60}" --batch-size 4 \
        --patch 112 --lr 1e-4 --kernel-fraction 0.5 --nonuniform-fraction 0.2 --sharp-fraction "$SHARP" \
        --colour-augment 0.2 >>"$LOGS/unet_sharp_$SHARP.log" 2>&1
    exit
fi
if [ "${1:-train}" = crisp ]; then
    # After v7: the v7 UNet (the `sharp` run's best.pt) fine-tuned on crisper photos: shrunk by up to 4x (default
    # 2x) before cutting, so that sharp inputs look like frames downscaled from a larger sensor (GOPRO's 640x360,
    # McMaster's 250x250) while the blurs keep their pixel extents; SHARP_FRACTION (default 0.5) of inputs left
    # sharp (v8: 0.3). 17 epochs: where v8's run was stopped, its learning rate halved four times and validation
    # flat since epoch 4 (its best). One thread; state in .../demo_training_v5/unet_crisp_<fraction>.
    SHARP=${SHARP_FRACTION:-0.5}
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$PY" -m helpers train unet --device cpu --early-stop 0 --seed 2 \
        --resume --val-patch 96 --val-items 32 --steps-per-epoch 50 --plateau-patience 2 \
        --kernels "$TRAIN/kernels/levin09.npz" --data "photos:$TRAIN/BSDS432=0.3,$TRAIN/Urban100=0.7" \
        --out "$RUNS/unet_crisp_$SHARP" --init "$RUNS/unet_sharp_0.5/best.pt" --epochs "${UNET_EPOCHS:-17}" \
        --batch-size 4 --patch 112 --lr 1e-4 --min-scale 0.25 --kernel-fraction 0.5 --nonuniform-fraction 0.2 \
        --sharp-fraction "$SHARP" --colour-augment 0.2 >>"$LOGS/unet_crisp_$SHARP.log" 2>&1
    exit
fi
# One thread per run, sleeping instead of spinning while waiting: three runs share two cores.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
if [ "${1:-train}" = v7 ]; then
    # After v6: EDSR's run continued with half of its low-resolution inputs aliased (OpenCV bicubic named twice: v6
    # gains +2.1 dB over bicubic on antialiased input but +0.9 on aliased); the export averages the two runs.
    # State in .../demo_training_v5/edsr_aliased.
    "$PY" -m helpers train edsr --device cpu --early-stop 0 --seed 1 --resume --val-patch 96 --val-items 32 \
        --steps-per-epoch 50 --plateau-patience 2 --data "photos:$TRAIN/BSDS432=0.5,$TRAIN/Urban100=0.5" \
        --out "$RUNS/edsr_aliased" --init "$RUNS/edsr/best.pt" --epochs "${EDSR_EPOCHS:-40}" --batch-size 6 \
        --patch 48 --lr 5e-5 --downscale-kernels area,bicubic,opencv-bicubic,opencv-bicubic \
        >>"$LOGS/edsr_aliased.log" 2>&1
    exit
fi

# float32: this machine's CPU (AMD EPYC, AVX2, no AVX512-BF16) runs bf16 autocast 5-9x slower than float32
# (DnCNN batch 32: 30-55 s per step against 5.7 s), and channels-last gained nothing there.
COMMON=(--device cpu --early-stop 0 --seed 0 --resume --val-patch 96 --val-items 32 --steps-per-epoch 50
        --plateau-patience 2 --kernels "$TRAIN/kernels/levin09.npz")
BSD=$TRAIN/BSDS432
URBAN=$TRAIN/Urban100

STAGES=${*:2}
STAGES=${STAGES:-dncnn unet edsr}
runs() { [[ " $STAGES " == *" $1 "* ]]; }
if [ "${1:-train}" != export ]; then
    # DnCNN: mostly BSD photos (its paper's training set), 30% street scenes; blind sigma 0-55; 20% of the clean
    # patches blurred first (the cascade denoises blurry frames), 5% left noise-free.
    runs dncnn && "$PY" -m helpers train dncnn "${COMMON[@]}" --data "photos:$BSD=0.7,$URBAN=0.3" --out "$RUNS/dncnn" \
        --init "$V4/dncnn.pt" --epochs "${DNCNN_EPOCHS:-40}" --batch-size 16 --patch 50 --lr 1e-4 \
        --min-scale 0.7 --sigma 0,55 --clean-fraction 0.05 --blurry-fraction 0.2 \
        --colour-augment 0.2 >>"$LOGS/dncnn.log" 2>&1 &
    # UNet: street scenes first; half the blurs real kernels, 20% non-uniform, 10% of inputs left sharp.
    runs unet && "$PY" -m helpers train unet "${COMMON[@]}" --data "photos:$BSD=0.4,$URBAN=0.6" --out "$RUNS/unet" \
        --init "$V4/unet.pt" --epochs "${UNET_EPOCHS:-40}" --batch-size 4 --patch 112 --lr 2e-4 \
        --kernel-fraction 0.5 --nonuniform-fraction 0.2 --sharp-fraction 0.1 \
        --colour-augment 0.2 >>"$LOGS/unet.log" 2>&1 &
    # EDSR: low-res inputs made with area, antialiased bicubic and aliased OpenCV bicubic in equal shares.
    runs edsr && "$PY" -m helpers train edsr "${COMMON[@]}" --data "photos:$BSD=0.5,$URBAN=0.5" --out "$RUNS/edsr" \
        --init "$V4/edsr.pt" --epochs "${EDSR_EPOCHS:-40}" --batch-size 6 --patch 48 --lr 2e-4 \
        --downscale-kernels area,bicubic,opencv-bicubic >>"$LOGS/edsr.log" 2>&1 &
    wait
fi
if [ "${1:-train}" = all ]; then
    # v8 from nothing: after the three runs above, each fine-tune from the run before it (every step resumes).
    SHARP_FRACTION=0.5 bash weights/train_demo.sh sharp
    bash weights/train_demo.sh v7
    SHARP_FRACTION=0.3 bash weights/train_demo.sh crisp
fi

"$PY" - "$RUNS" <<'PYTHON'
import sys
from pathlib import Path

from helpers.checkpoint import average_models, export_weights, load_checkpoint, load_model

runs = Path(sys.argv[1])
source = "demo v8: BSD432 + Urban100 photos, CPU (weights/README.md)"
# v8: DnCNN from its v5 run, the UNet from the crisp-photo fine-tune (`crisp` mode, SHARP_FRACTION=0.3; its deblur
# gate's ramp is measured below), EDSR the average of its run (a third of the inputs aliased) and that run continued
# with half of them aliased (`v7` mode). Each run's best.pt: lowest loss on held-out photos.
for name, run in (("dncnn", "dncnn"), ("unet", "unet_crisp_0.3")):
    path = runs / run / "best.pt"
    history = load_checkpoint(path)["history"]
    export_weights(load_model(path, expected_name=name), Path("weights") / f"{name}.pt", history=history, source=source)
    print(f"weights/{name}.pt <- {path}: val PSNR {history['val_psnr'][-1]:.2f} dB after {len(history['val_psnr'])} epochs")
soup = [runs / "edsr" / "best.pt", runs / "edsr_aliased" / "best.pt"]
runs_named = " and ".join(str(path.relative_to(runs)) for path in soup)
export_weights(average_models(soup, expected_name="edsr"), Path("weights") / "edsr.pt",
               history=load_checkpoint(soup[-1])["history"], source=f"{source}; the average of the runs {runs_named}")
print(f"weights/edsr.pt <- the average of {runs_named} in {runs}")
PYTHON
# The UNet's deblur gate: the ramp measured for it on 60 training photos (sharp, synthetic shake, real kernels).
"$PY" -m helpers calibrate-deblur weights/unet.pt --photos "$TRAIN/BSDS432" "$TRAIN/Urban100" \
    --kernels "$TRAIN/kernels/levin09.npz" --limit 60 --device cpu -o weights/unet.pt
