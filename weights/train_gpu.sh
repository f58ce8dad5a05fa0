#!/usr/bin/env bash
# A GPU recipe ready to fire inside a short lease: DnCNN, the gated UNet (NAFNet block, width 32, encoder 1-1-1-8: the
# largest whose float16 file stays under 16 MB) and EDSR trained from scratch on a subset of the shared training photos
# (BSD432 + Urban100, real Levin kernels beside synthetic camera shake: train_demo.sh's data and degradations), all three
# side by side on one GPU for TRAIN_SECONDS each (default 270; a run stopped mid-epoch keeps its last finished epochs);
# then each run's best epoch exported as a float16 weights file, the UNet's deblur ramp calibrated on training photos
# (python -m helpers calibrate-deblur), and bench.eval_shared run on the new files and on the bundled v8 files over the
# same evaluation images: the three weights files, report.md and logs.txt land in $OUT.
#
#   bash weights/train_gpu.sh prepare    (here, once: the subset -> datasets/train_gpu/, git-ignored, about 36 MB:
#                                         training photos, evaluation images re-encoded losslessly, the kornia wheels)
#   bash weights/train_gpu.sh run        (on the GPU machine, carrying datasets/train_gpu: train, then report; about
#                                         8 minutes; or `train` and `report` as two commands)
#   TINY=1 bash weights/train_gpu.sh prepare && TINY=1 bash weights/train_gpu.sh run   (the same steps at toy size on
#                                         the CPU in a minute: tiny networks, two steps each; tests/test_train_gpu.py)
#
# Nothing is installed on the GPU machine: its python3 holds PyTorch, OpenCV, scikit-image, SciPy and matplotlib but not
# kornia, whose two wheels (fetched by `prepare`) are unpacked into the run folder and put on PYTHONPATH there.
# Folders: GPU_SUBSET (default datasets/train_gpu), GPU_RUNS (runs/train_gpu: training state and logs), OUT
# (outputs/train_gpu), TRAIN_DATA and EVAL_DATA (../shared/data/train and ../shared/data/eval, read by `prepare` only;
# the evaluation images are only ever measured on, never trained on). SUBSET_MB (default 22) bounds the training photos.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
SUBSET=${GPU_SUBSET:-datasets/train_gpu}
RUNS=${GPU_RUNS:-runs/train_gpu}
OUT=${OUT:-outputs/train_gpu}
TINY=${TINY:-0}
MODE=${1:-run}
export TQDM_MININTERVAL=30 PYTHONUNBUFFERED=1

if [ "$MODE" = prepare ]; then
    # Training photos spread evenly over each folder within SUBSET_MB (half each), copied as published; the kernels;
    # McMaster (all 18) and every 4th CBSD68 photo as lossless WebP (pixel-identical, smaller than TIFF/PNG).
    "$PY" - "${TRAIN_DATA:-../shared/data/train}" "${EVAL_DATA:-../shared/data/eval}" "$SUBSET" "${SUBSET_MB:-22}" <<'PYTHON'
import shutil
import sys
from pathlib import Path

from helpers.io import list_images, read_image, write_image

train, evaluation, subset, megabytes = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
shutil.rmtree(subset, ignore_errors=True)
for folder in ("BSDS432", "Urban100"):
    photos = list_images(train / folder)
    budget, chosen = megabytes * 1e6 / 2, []
    for stride in range(1, len(photos) + 1):  # the smallest stride whose photos fit the folder's half of the budget
        chosen = photos[::stride]
        if sum(path.stat().st_size for path in chosen) <= budget:
            break
    (subset / "train" / folder).mkdir(parents=True)
    for path in chosen:
        shutil.copyfile(path, subset / "train" / folder / path.name)
    print(f"{folder}: {len(chosen)} of {len(photos)} photos")
(subset / "train" / "kernels").mkdir()
shutil.copyfile(train / "kernels" / "levin09.npz", subset / "train" / "kernels" / "levin09.npz")
for folder, stride in (("McMaster", 1), ("CBSD68", 4)):
    images = list_images(evaluation / folder)[::stride]
    for path in images:
        write_image(subset / "eval" / folder / f"{path.stem}.webp", read_image(path))
    print(f"{folder}: {len(images)} images (evaluation only)")
PYTHON
    if [ "$TINY" = 0 ]; then  # the versions this machine's environment runs, built for the GPU machine's Python 3.12
        versions=$("$PY" -c "from importlib.metadata import version; print(f\"kornia=={version('kornia')} kornia_rs=={version('kornia_rs')}\")")
        # shellcheck disable=SC2086
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$SUBSET/wheels" $versions
    fi
    du -sh "$SUBSET"
    exit
fi
[ -d "$SUBSET/train" ] || { echo "error: $SUBSET: no training subset; run 'bash weights/train_gpu.sh prepare' first" >&2; exit 2; }

if [ "$MODE" = train ] || [ "$MODE" = run ]; then
    if ! "$PY" -c "import kornia" 2>/dev/null; then
        for wheel in "$SUBSET"/wheels/*.whl; do "$PY" -m zipfile -e "$wheel" "$RUNS/site"; done
        export PYTHONPATH="$PWD/$RUNS/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    rm -rf "$RUNS/dncnn" "$RUNS/unet" "$RUNS/edsr"
    mkdir -p "$RUNS/logs"
    DATA=$SUBSET/train
    COMMON=(--early-stop 0 --seed 0 --plateau-patience 8 --cascade-weights none --kernels "$DATA/kernels/levin09.npz")
    if [ "$TINY" = 0 ]; then
        COMMON+=(--device cuda --amp --amp-dtype bfloat16 --epochs 1000 --steps-per-epoch 100 --num-workers 4 --val-items 64)
        DNCNN=(--batch-size 64 --patch 50 --val-patch 96)
        UNET=(--arch block=nafnet,width=32,enc_blocks=1-1-1-8,middle_blocks=1,dec_blocks=1-1-1-1 --batch-size 16 --patch 256
              --val-patch 192 --lr 1e-3)
        EDSR=(--batch-size 32 --patch 48 --val-patch 96)
    else
        COMMON+=(--device cpu --epochs 1 --steps-per-epoch 2 --val-items 2 --batch-size 2)
        DNCNN=(--arch depth=5,channels=8 --patch 32 --val-patch 32)
        UNET=(--arch block=nafnet,width=8,enc_blocks=1-1,middle_blocks=1,dec_blocks=1-1 --patch 32 --val-patch 32)
        EDSR=(--arch num_blocks=1,channels=8 --patch 16 --val-patch 32)
    fi
    # The data settings of train_demo.sh's runs (v5-v8): blind noise with a few clean and blurry patches; half the blurs
    # real kernels, 30% of the UNet's inputs sharp, photos shrunk by up to 4x; EDSR's inputs half aliased.
    pids=()
    timeout "${TRAIN_SECONDS:-270}" "$PY" -m helpers train dncnn "${COMMON[@]}" "${DNCNN[@]}" --out "$RUNS/dncnn" \
        --data "photos:$DATA/BSDS432=0.7,$DATA/Urban100=0.3" --min-scale 0.7 --sigma 0,55 --clean-fraction 0.05 \
        --blurry-fraction 0.2 --colour-augment 0.2 >"$RUNS/logs/dncnn.log" 2>&1 & pids+=($!)
    timeout "${TRAIN_SECONDS:-270}" "$PY" -m helpers train unet "${COMMON[@]}" "${UNET[@]}" --out "$RUNS/unet" \
        --data "photos:$DATA/BSDS432=0.3,$DATA/Urban100=0.7" --min-scale 0.25 --kernel-fraction 0.5 \
        --nonuniform-fraction 0.2 --sharp-fraction 0.3 --colour-augment 0.2 >"$RUNS/logs/unet.log" 2>&1 & pids+=($!)
    timeout "${TRAIN_SECONDS:-270}" "$PY" -m helpers train edsr "${COMMON[@]}" "${EDSR[@]}" --out "$RUNS/edsr" \
        --data "photos:$DATA/BSDS432=0.5,$DATA/Urban100=0.5" \
        --downscale-kernels area,bicubic,opencv-bicubic,opencv-bicubic >"$RUNS/logs/edsr.log" 2>&1 & pids+=($!)
    for pid in "${pids[@]}"; do
        status=0
        wait "$pid" || status=$?
        [ "$status" = 0 ] || [ "$status" = 124 ] || { echo "error: a training run failed ($status): see $RUNS/logs" >&2; tail -3 "$RUNS"/logs/*.log >&2; exit 1; }
    done
fi

if [ "$MODE" = report ] || [ "$MODE" = run ]; then
    [ -d "$RUNS/site" ] && export PYTHONPATH="$PWD/$RUNS/site${PYTHONPATH:+:$PYTHONPATH}"
    mkdir -p "$OUT"
    DEVICE=$([ "$TINY" = 0 ] && echo auto || echo cpu)
    "$PY" - "$RUNS" "$OUT" <<'PYTHON'
import sys
from pathlib import Path

from helpers.checkpoint import export_weights, load_checkpoint, load_model

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("dncnn", "unet", "edsr"):
    best = runs / name / "best.pt"
    if not best.is_file():
        raise SystemExit(f"error: {best}: the {name} run finished no epoch (see {runs / 'logs' / f'{name}.log'})")
    history = load_checkpoint(best)["history"]
    export_weights(load_model(best, expected_name=name), out / f"{name}.pt", history=history,
                   source="weights/train_gpu.sh: trained from scratch on one GPU (subset of BSD432 + Urban100)")
PYTHON
    "$PY" -m helpers calibrate-deblur "$OUT/unet.pt" --photos "$SUBSET/train/BSDS432" "$SUBSET/train/Urban100" \
        --kernels "$SUBSET/train/kernels/levin09.npz" --limit 60 --device "$DEVICE" -o "$OUT/unet.pt" >"$RUNS/logs/calibrate.log" 2>&1
    for weights in "$OUT" weights; do
        "$PY" -m bench.eval_shared --root "$SUBSET/eval" --kernels "$SUBSET/train/kernels/levin09.npz" --weights "$weights" \
            --only denoise,sr,cascade,kernels,clean --sigmas 25 --out "$RUNS/eval_$(basename "$weights")" >"$RUNS/logs/eval_$(basename "$weights").log" 2>&1
    done
    "$PY" - "$RUNS" "$OUT" "$(basename "$OUT")" <<'PYTHON'
import re
import sys
from pathlib import Path

import torch

from helpers.checkpoint import load_checkpoint
from helpers.evaluate import format_table

runs, out, new = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
rows = []
for name in ("dncnn", "unet", "edsr"):
    state = load_checkpoint(runs / name / "last.pt")
    history, best = state["history"], load_checkpoint(runs / name / "best.pt")["epoch"]
    rows.append({"run": name, "network": str(state["arch"]["kwargs"]), "steps": state["global_step"],
                 "minutes": f"{sum(history['seconds']) / 60:.1f}", "s/step": f"{history['seconds_per_step'][-1]:.3f}",
                 "best epoch": best, "val PSNR": f"{history['val_psnr'][best - 1]:.2f}",
                 "input PSNR": f"{history['input_psnr'][best - 1]:.2f}"})
calibration = (runs / "logs" / "calibrate.log").read_text().strip().splitlines()[-1]
report = [f"# weights/train_gpu.sh on {device}\n", "## Training (held-out photo patches)\n", format_table(rows),
          f"\nUNet deblur ramp: {calibration}\n",
          f"## The new weights ({new}/), bench.eval_shared on the carried images\n",
          (runs / f"eval_{new}" / "report.md").read_text(),
          "## The bundled v8 weights on the same images\n", (runs / "eval_weights" / "report.md").read_text()]
(out / "report.md").write_text("\n".join(report))
kept = re.compile(r"(epoch \d+/\d+: .*|measured .*|error.*|Traceback.*)")  # epoch summaries and failures, not progress bars
(out / "logs.txt").write_text("".join(
    f"== {log.name}\n" + "".join(match.group(0) + "\n" for match in map(kept.search, log.read_text().splitlines()) if match)
    for log in sorted((runs / "logs").glob("*.log"))))
print((out / "report.md").read_text())
PYTHON
fi
