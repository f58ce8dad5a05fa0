"""Measure the bundled weights on real test images kept outside the repository (``../shared/data/eval``).

Not part of ``make bench`` or the tests (the images are not in the repo). Tables go to stdout and, as
Markdown, to ``--out``:

- DnCNN on CBSD68 with Gaussian noise sigma 15 / 25 / 50 (unclipped-then-8-bit noisy input, fixed seed);
- EDSR x2 on McMaster, Y channel, border 2 cropped, inputs downscaled bicubically (the SR-table convention)
  and with area averaging (how the training data is made);
- the whole cascade on McMaster with synthetic GOPRO-style blur: sharp 500x500 image -> motion blur ->
  2x area downscale -> cascade -> compared with the sharp image, beside bicubic and bicubic + unsharp;
- the real blurry GOPRO-type frames (no ground truth): a grid of blurry input, bicubic, ours and
  DeepDeblur's published output, for a look by eye.

    python -m bench.eval_shared [--root ../shared/data/eval] [--weights weights] [--out outputs/eval_shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from helpers.checkpoint import load_model
from helpers.degrade import downscale, motion_blur
from helpers.evaluate import (
    evaluate_cascade, evaluate_denoising, evaluate_super_resolution, format_table, upscale_bicubic,
)
from helpers.io import float_image, list_images, read_image, uint8_image
from helpers.pipeline import DEFAULT_WEIGHTS_DIR, Restorer
from helpers.viz import image_grid

DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "eval"


def _images(folder: Path) -> dict[str, np.ndarray]:
    return {path.stem: read_image(path) for path in list_images(folder)}


def _blurred_pairs(images: dict[str, np.ndarray], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(2x-downscaled synthetic motion blur, sharp) pairs; the blur extent is GOPRO's 2.5% of the long side."""
    pairs = []
    for index, image in enumerate(images.values()):
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        rng = np.random.default_rng([seed, index])
        blurred = motion_blur(float_image(image), rng, max_shift=0.025 * max(image.shape[:2]))
        pairs.append((uint8_image(downscale(blurred, 2)), image))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--out", type=Path, default=Path("outputs/eval_shared"))
    parser.add_argument("--only", default="denoise,sr,cascade,real", help="comma-separated subset")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    report = []

    def section(title: str, table: list[dict]) -> None:
        text = f"## {title}\n\n{format_table(table)}\n"
        print(text, flush=True)
        report.append(text)

    if "denoise" in only:
        dncnn, cbsd68 = load_model(args.weights / "dncnn.pt", "dncnn"), _images(args.root / "CBSD68")
        for sigma in (15, 25, 50):
            section(f"DnCNN, CBSD68, sigma {sigma}", evaluate_denoising(dncnn, cbsd68, sigma=sigma, seed=0).table)
    if "sr" in only:
        edsr, mcmaster = load_model(args.weights / "edsr.pt", "edsr"), _images(args.root / "McMaster")
        for method in ("bicubic", "area"):
            evaluation = evaluate_super_resolution(edsr, mcmaster, scale=2, y_channel=True, crop_border=2, downscale_method=method)
            section(f"EDSR x2, McMaster, {method} downscaling, Y channel, border 2", evaluation.table)
    if "cascade" in only:
        restorer = Restorer.from_weights(args.weights)
        evaluation = evaluate_cascade(restorer, _blurred_pairs(_images(args.root / "McMaster")), y_channel=True)
        section("Cascade, McMaster with synthetic GOPRO-style blur, 2x (250x250 -> 500x500)", evaluation.table)
    if "real" in only:
        restorer = Restorer.from_weights(args.weights)
        rows, titles = [], []
        for name, frame in list(_images(args.root / "gopro_real_blurry").items())[:4]:
            small = uint8_image(downscale(float_image(frame), 2))
            published = args.root / "gopro_real_blurry_deepdeblur_output" / f"{name}.png"
            crop = (slice(180, 540), slice(320, 960))  # the centre half, where detail is visible
            row = [frame, upscale_bicubic(small, *frame.shape[:2]), restorer.restore(small)]
            row_titles = ["blurry 1280x720", "bicubic from 640x360", "ours from 640x360"]
            if published.is_file():
                row.append(read_image(published))
                row_titles.append("DeepDeblur (full res.)")
            rows.append([image[crop] for image in row])
            titles.append([f"{name}: {title}" if i == 0 else title for i, title in enumerate(row_titles)])
        image_grid(rows, titles, save=args.out / "real_gopro_grid.png")
        print(f"wrote {args.out / 'real_gopro_grid.png'}")
    (args.out / "report.md").write_text("\n".join(report))
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
