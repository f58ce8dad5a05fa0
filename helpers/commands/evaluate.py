"""``python -m helpers evaluate``: the cascade's ablation, or one network on its own task, from the flags to files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from torch import nn

from ..checkpoint import load_model
from ..data import pairs_for
from ..evaluate import (
    NOISE_PROTOCOLS,
    Evaluation,
    evaluate_cascade,
    evaluate_deblurring,
    evaluate_denoising,
    evaluate_super_resolution,
    format_table,
)
from ..inference import pick_device
from ..io import list_images, read_image
from ..pipeline import DEFAULT_WEIGHTS_DIR, Restorer
from ..report import save_evaluation
from .options import DATA_HELP, add_device

__all__ = ["TASKS", "add_parser", "run_task", "evaluate_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``evaluate`` command's flags."""
    parser = commands.add_parser(
        "evaluate",
        help="ablation table (each cumulative stage vs classical baselines) or one network on its own task",
        description="--task cascade: the cascade on paired frames (test split of --data). --task denoise|sr|deblur: "
        "one network on clean images (--data sample, or folder:PATH / PATH of images) degraded with noise, "
        "downscaling or synthetic motion blur, beside the noisy / bicubic / blurry input. Writes TASK.csv, "
        "TASK.md, TASK_per_image.csv and TASK_grid.png under --out.",
    )
    parser.add_argument("--task", default="cascade", choices=["cascade", "denoise", "sr", "deblur"])
    parser.add_argument("--data", default="sample", help=DATA_HELP)
    parser.add_argument("--weights", default=None,
                        help="folder with dncnn.pt, unet.pt, edsr.pt (default: bundled); for one network also a .pt file")
    parser.add_argument("--out", default="outputs/evaluate")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--y-channel", action="store_true", help="also report PSNR/SSIM on the Y channel")
    parser.add_argument("--sigma", type=float, default=25.0, help="denoise: noise level on the 0-255 scale")
    parser.add_argument("--noise-protocol", default="clipped", choices=["clipped", "paper"],
                        help="denoise: clipped = noisy image clipped to [0, 1] and rounded to 8 bits (a saved photo; "
                             "default); paper = float noise, unclipped, as in published tables")
    parser.add_argument("--scale", type=int, default=2, help="sr: upscaling factor")
    parser.add_argument("--downscale", default="area", choices=["area", "bicubic", "opencv-bicubic"],
                        help="sr: how the low-res input is made (area: like the sample set's frames; bicubic: antialiased, "
                             "like published tables; opencv-bicubic: cv2.INTER_CUBIC, aliased)")
    parser.add_argument("--seed", type=int, default=0, help="denoise/deblur: seed of the synthetic degradation")
    add_device(parser)


TASKS = ("cascade", "denoise", "sr", "deblur")
_TASK_MODEL = {"denoise": "dncnn", "sr": "edsr", "deblur": "unet"}


def _clean_images(spec: str, limit: int | None) -> dict[str, np.ndarray]:
    """Clean images for a single-stage task: "sample" (the sample set's sharp test frames) or a folder."""
    if spec == "sample":
        files = {pair.name: pair.sharp for pair in pairs_for("sample", "test")}
    else:
        folder = spec.split(":", 1)[1] if spec.startswith("folder:") else spec
        files = {path.stem: path for path in list_images(folder)}
    chosen = list(files.items())[:limit]
    return {name: read_image(path) for name, path in chosen}


def _single_model(weights: str | None, task: str, device: str) -> nn.Module:
    """The task's network from a checkpoint file, or ``<model>.pt`` in a weights folder (default: bundled)."""
    name = _TASK_MODEL[task]
    path = Path(weights or DEFAULT_WEIGHTS_DIR)
    if path.is_dir():
        path = path / f"{name}.pt"
    return load_model(path, expected_name=name, map_location=pick_device(device))


def run_task(args: argparse.Namespace) -> tuple[Evaluation, str]:
    """Run the evaluation the parsed CLI arguments ask for; returns it and its title."""
    if args.task == "cascade":
        restorer = Restorer.from_weights(args.weights, device=args.device)
        pairs = pairs_for(args.data, "test")
        evaluation = evaluate_cascade(restorer, pairs, y_channel=args.y_channel, limit=args.limit)
        return evaluation, f"Cascade ablation on {args.data} (test split, {min(len(pairs), args.limit or len(pairs))} images)"
    if args.task not in _TASK_MODEL:
        raise ValueError(f"unknown task {args.task!r}: expected one of {', '.join(TASKS)}")
    model = _single_model(args.weights, args.task, args.device)
    images = _clean_images(args.data, args.limit)
    common = {"device": args.device}
    if args.task == "denoise":
        evaluation = evaluate_denoising(
            model, images, args.sigma, args.seed, noise_protocol=args.noise_protocol, y_channel=args.y_channel, **common
        )
        protocol = f"{args.noise_protocol} noise protocol: {NOISE_PROTOCOLS[args.noise_protocol]}"
        return evaluation, f"Denoising, sigma {args.sigma:g}, on {args.data} ({len(images)} images); {protocol}"
    if args.task == "sr":
        evaluation = evaluate_super_resolution(model, images, args.scale, downscale_method=args.downscale, **common)
        return evaluation, f"x{args.scale} super-resolution (Y channel, border {args.scale}) on {args.data} ({len(images)} images)"
    evaluation = evaluate_deblurring(model, images, args.seed, y_channel=args.y_channel, **common)
    return evaluation, f"Deblurring (synthetic motion blur) on {args.data} ({len(images)} images)"


def evaluate_command(args: argparse.Namespace) -> int:
    """``python -m helpers evaluate``: run the task, print the table, write CSV/Markdown/grid under ``--out``.

    Returns 0, or 2 with a one-line error when the weights or the data cannot be used.
    """
    try:
        evaluation, title = run_task(args)
    except (OSError, ValueError) as error:  # bad weights, missing or unreadable data: a setup error
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    paths = save_evaluation(evaluation, args.out, args.task, title)
    print(f"{title}\n\n{format_table(evaluation.table)}\n")
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0
