"""The real blurry GOPRO frames through the shipped cascade beside DeepDeblur's published output: one small JPEG.

Each of the seven real motion-blurred 1280x720 frames (``../shared/data/eval/gopro_real_blurry``, no sharp
version exists) is downscaled 2x to 640x360 (area), the cascade's input, and restored to 1280x720 with the
weights in ``--weights`` (the Restorer's defaults: its noise and deblur gates on). One row per frame, the
same crop of each at full resolution, pixel for pixel: bicubic upscaling of the 640x360 input, ours from that
input, and DeepDeblur (Nah et al. 2017) run by its authors on the full-resolution frame
(``gopro_real_blurry_deepdeblur_output``). The crop is where each frame's detail is (faces, a sign, people's
outlines, a number plate), chosen by eye once on DeepDeblur's output and listed in ``CROPS``. Written to ``weights/real_gopro_grid.jpg`` by default:

    python -m bench.real_frames [--weights weights] [--root ../shared/data/eval] [--out weights/real_gopro_grid.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from helpers.degrade import downscale
from helpers.evaluate import upscale_bicubic
from helpers.io import float_image, list_images, read_image, uint8_image
from helpers.safe_writes import atomic_path
from helpers.pipeline import DEFAULT_WEIGHTS_DIR, Restorer

DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "eval"
CROP_HEIGHT, CROP_WIDTH = 200, 300
# (top, left) of each frame's crop at 1280x720, by frame name up to "_frame": people, faces, a sign, a number plate
CROPS: dict[str, tuple[int, int]] = {
    "seq_id-11": (380, 560), "seq_id-1": (300, 400), "seq_id-2": (20, 450), "seq_id-3": (280, 300),
    "seq_id-4": (260, 490), "seq_id-5": (330, 560), "seq_id-6": (330, 20),
}
COLUMNS = ("bicubic from 640x360", "ours from 640x360", "DeepDeblur (1280x720 input)")
LABEL_HEIGHT = 22


def _crop(image: np.ndarray, name: str) -> np.ndarray:
    top, left = CROPS.get(name, ((image.shape[0] - CROP_HEIGHT) // 2, (image.shape[1] - CROP_WIDTH) // 2))  # else the centre
    return image[top : top + CROP_HEIGHT, left : left + CROP_WIDTH]


def _label(text: str, width: int) -> np.ndarray:
    """A white strip with ``text`` in black (OpenCV's Hershey font: no font files needed)."""
    strip = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def frame_row(restorer: Restorer, frame: np.ndarray, deblurred: np.ndarray, name: str) -> np.ndarray:
    """One frame's crops side by side, each under its label: bicubic, ours (both from 640x360), DeepDeblur."""
    small = uint8_image(downscale(float_image(frame), 2))
    tiles = [upscale_bicubic(small, *frame.shape[:2]), restorer.restore(small), deblurred]
    labels = [f"{name}: {COLUMNS[0]}", *COLUMNS[1:]]
    return np.hstack([np.vstack([_label(label, CROP_WIDTH), _crop(tile, name)]) for label, tile in zip(labels, tiles)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_frames", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=Path("weights/real_gopro_grid.jpg"))
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    args = parser.parse_args(argv)
    restorer = Restorer.from_weights(args.weights)
    rows = []
    for path in list_images(args.root / "gopro_real_blurry"):
        published = args.root / "gopro_real_blurry_deepdeblur_output" / path.name
        rows.append(frame_row(restorer, read_image(path), read_image(published), path.stem.split("_frame")[0]))
        print(f"{path.name}: restored", flush=True)
    grid = np.vstack(rows)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, args.quality])
    if not ok:
        raise SystemExit(f"error: {args.out}: OpenCV could not encode the grid as JPEG")
    with atomic_path(args.out) as temp:
        Path(temp).write_bytes(encoded.tobytes())
    print(f"wrote {args.out}: {grid.shape[1]}x{grid.shape[0]}, {len(encoded) / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
