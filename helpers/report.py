"""Evaluations to files, and the ``python -m helpers evaluate`` command.

``save_evaluation`` writes an ``helpers.evaluate.Evaluation`` as CSV and Markdown tables and an image
grid (``helpers.viz``); every file is written to a temporary name and renamed. It lives above both
``evaluate`` (which measures) and ``viz`` (which draws), so that neither imports the other's user.
CLI: ``python -m helpers evaluate --task cascade|denoise|sr|deblur --data ...`` (see ``evaluate_command``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from .checkpoint import load_model
from .data import pairs_for
from .evaluate import (
    NOISE_PROTOCOLS,
    Evaluation,
    evaluate_cascade,
    evaluate_deblurring,
    evaluate_denoising,
    evaluate_super_resolution,
    format_table,
)
from .inference import pick_device
from .io import atomic_path, list_images, read_image
from .pipeline import DEFAULT_WEIGHTS_DIR, Restorer
from .viz import evaluation_grid

__all__ = ["TASKS", "save_evaluation", "run_task", "evaluate_command"]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_path(path) as temp:
        with open(temp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text)


def save_evaluation(evaluation: Evaluation, out_dir: str | os.PathLike, name: str, title: str = "") -> dict[str, Path]:
    """Write ``<name>.csv``, ``<name>.md`` (table), ``<name>_per_image.csv`` and ``<name>_grid.png`` under ``out_dir``.

    The grid shows every method and the target for the kept examples, each titled with its PSNR,
    a full frame row and a zoomed centre-crop row per example. Returns the paths written.
    """
    out_dir = Path(out_dir)
    paths = {
        "table_csv": out_dir / f"{name}.csv",
        "table_md": out_dir / f"{name}.md",
        "per_image_csv": out_dir / f"{name}_per_image.csv",
        "grid_png": out_dir / f"{name}_grid.png",
    }
    _write_csv(paths["table_csv"], evaluation.table)
    _write_text(paths["table_md"], (f"## {title}\n\n" if title else "") + format_table(evaluation.table) + "\n")
    _write_csv(paths["per_image_csv"], evaluation.per_image)
    evaluation_grid(evaluation, save=paths["grid_png"])
    return paths


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
