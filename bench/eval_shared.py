"""Measure the bundled weights on real test images kept outside the repository (``../shared/data/eval``).

Not part of ``make bench`` or the tests (the images are not in the repo). Tables go to stdout and, as
Markdown, to ``--out``:

- DnCNN on CBSD68 with Gaussian noise sigma 15 / 25 / 50 (unclipped-then-8-bit noisy input, fixed seed);
- EDSR x2 on McMaster, Y channel, border 2 cropped, inputs downscaled with antialiased bicubic (the SR-table
  convention), area averaging, and OpenCV's aliased INTER_CUBIC;
- the whole cascade on McMaster with synthetic GOPRO-style blur: sharp 500x500 image -> motion blur ->
  2x area downscale -> cascade -> compared with the sharp image, beside bicubic and bicubic + unsharp;
- the same with the 8 real camera-shake kernels of Levin et al. (``--kernels``; image i gets kernel i mod 8,
  at its own size on the 500x500 image, convolved in linear light). The kernels are also a training
  augmentation (rotated, flipped, rescaled); the photos are not;
- the cascade on clean McMaster photos (2x area downscale only): what the denoising and deblurring stages
  cost on an image that needs no repair, against EDSR alone;
- the real blurry GOPRO-type frames (no ground truth): a grid of blurry input, bicubic, ours and
  DeepDeblur's published output, for a look by eye.

    python -m bench.eval_shared [--root ../shared/data/eval] [--weights weights] [--out outputs/eval_shared]
                                [--only denoise,sr,cascade,kernels,clean,real] [--self-ensemble unet]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from helpers.checkpoint import load_model
from helpers.data import load_blur_kernels
from helpers.degrade import downscale, kernel_blur, motion_blur
from helpers.evaluate import (
    evaluate_cascade, evaluate_denoising, evaluate_super_resolution, format_table, upscale_bicubic,
)
from helpers.io import float_image, list_images, read_image, uint8_image
from helpers.pipeline import DEFAULT_WEIGHTS_DIR, Restorer
from helpers.viz import image_grid

DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "eval"
DEFAULT_KERNELS = DEFAULT_ROOT.parent / "train" / "kernels" / "levin09.npz"


def _images(folder: Path) -> dict[str, np.ndarray]:
    return {path.stem: read_image(path) for path in list_images(folder)}


def _degraded_pairs(images: dict[str, np.ndarray], blur: Callable[[np.ndarray, int], np.ndarray] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(2x area-downscaled ``blur(image, index)`` or clean image, sharp image) pairs, 8-bit."""
    pairs = []
    for index, image in enumerate(images.values()):
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        degraded = float_image(image) if blur is None else blur(float_image(image), index)
        pairs.append((uint8_image(downscale(degraded, 2)), image))
    return pairs


def _synthetic_blur(image: np.ndarray, index: int, seed: int = 0) -> np.ndarray:
    """GOPRO-style motion blur of extent 2.5% of the long side, seeded per image."""
    return motion_blur(image, np.random.default_rng([seed, index]), max_shift=0.025 * max(image.shape[:2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR)
    parser.add_argument("--out", type=Path, default=Path("outputs/eval_shared"))
    parser.add_argument("--sigmas", default="15,25,50", help="denoise: comma-separated noise levels (0-255 scale)")
    parser.add_argument("--kernels", type=Path, default=DEFAULT_KERNELS, help="real blur kernels (.npz) for the kernel row")
    parser.add_argument("--only", default="denoise,sr,cascade,kernels,clean,real", help="comma-separated subset")
    parser.add_argument("--self-ensemble", default="", metavar="STAGES",
                        help="cascade rows: networks run as a self-ensemble of 8 flips and transposes (e.g. unet)")
    args = parser.parse_args(argv)
    ensemble = {"self_ensemble": [stage for stage in args.self_ensemble.split(",") if stage]}
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    report = []

    def section(title: str, table: list[dict]) -> None:
        text = f"## {title}\n\n{format_table(table)}\n"
        print(text, flush=True)
        report.append(text)

    if "denoise" in only:
        dncnn, cbsd68 = load_model(args.weights / "dncnn.pt", "dncnn"), _images(args.root / "CBSD68")
        for sigma in (float(value) for value in args.sigmas.split(",")):
            section(f"DnCNN, CBSD68, sigma {sigma:g}", evaluate_denoising(dncnn, cbsd68, sigma=sigma, seed=0).table)
    if "sr" in only:
        edsr, mcmaster = load_model(args.weights / "edsr.pt", "edsr"), _images(args.root / "McMaster")
        for method in ("bicubic", "area", "opencv-bicubic"):
            evaluation = evaluate_super_resolution(edsr, mcmaster, scale=2, y_channel=True, crop_border=2, downscale_method=method)
            section(f"EDSR x2, McMaster, {method} downscaling, Y channel, border 2", evaluation.table)
    if "cascade" in only:
        restorer = Restorer.from_weights(args.weights, **ensemble)
        evaluation = evaluate_cascade(restorer, _degraded_pairs(_images(args.root / "McMaster"), _synthetic_blur), y_channel=True)
        section("Cascade, McMaster with synthetic GOPRO-style blur, 2x (250x250 -> 500x500)", evaluation.table)
    if "kernels" in only:
        kernels = load_blur_kernels(args.kernels)
        pairs = _degraded_pairs(_images(args.root / "McMaster"), lambda image, i: kernel_blur(image, kernels[i % len(kernels)]))
        evaluation = evaluate_cascade(Restorer.from_weights(args.weights, **ensemble), pairs, y_channel=True)
        section("Cascade, McMaster blurred with the 8 real kernels of Levin et al., 2x (250x250 -> 500x500)", evaluation.table)
    if "clean" in only:
        pairs = _degraded_pairs(_images(args.root / "McMaster"), None)
        full = evaluate_cascade(Restorer.from_weights(args.weights, stages=("dncnn", "unet", "edsr"), **ensemble), pairs, y_channel=True)
        alone = evaluate_cascade(Restorer.from_weights(args.weights, stages=("edsr",), **ensemble), pairs, y_channel=True)
        section("Cascade without unsharp, clean McMaster (no blur, no noise), 2x", full.table)
        edsr_alone, edsr_after = (next(row["psnr"] for row in e.table if row["method"] == "+ EDSR") for e in (alone, full))
        line = f"DnCNN + UNet cost on clean photos: {edsr_alone - edsr_after:+.3f} dB RGB (EDSR alone {edsr_alone:.2f} dB)"
        print(line, flush=True)
        report.append(line + "\n")
    if "real" in only:
        restorer = Restorer.from_weights(args.weights, **ensemble)
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
