"""``python -m helpers demo`` (``make demo``): restore the embedded sample set with the bundled weights.

Builds the sample set (no download), restores its test frames (blurry 1280x720 downscaled to
640x360) to 1280x720 with DnCNN -> UNet -> EDSR -> unsharp mask, and writes under ``--out``:
``restored/<name>.png``, the ablation table ``demo.csv`` / ``demo.md``, ``demo_per_image.csv`` and
the before/after grid ``demo_grid.png``; the table is also printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import pairs_for
from ..evaluate import evaluate_cascade, format_table
from ..pipeline import DEFAULT_WEIGHTS_DIR, NETWORK_STAGES, Restorer
from ..report import save_evaluation
from .options import add_device

__all__ = ["add_parser", "missing_weights", "demo_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``demo`` command's flags."""
    parser = commands.add_parser("demo", help="restore the embedded samples and print the evaluation table")
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--weights", default=None, help="folder with dncnn.pt, unet.pt, edsr.pt (default: bundled weights/)")
    add_device(parser)


def missing_weights(weights_dir: Path) -> list[str]:
    """The network files (dncnn.pt, unet.pt, edsr.pt) absent from ``weights_dir``."""
    return [f"{stage}.pt" for stage in NETWORK_STAGES if not (weights_dir / f"{stage}.pt").is_file()]


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo; returns 1 with a message on stderr when the weights are missing."""
    weights_dir = Path(args.weights) if args.weights else DEFAULT_WEIGHTS_DIR
    missing = missing_weights(weights_dir)
    if missing:
        print(
            f"demo: {weights_dir} lacks {', '.join(missing)}. The demo weights ship with the repository in weights/: "
            "update your checkout (git pull), or rebuild them with `bash weights/train_demo.sh` (slow on a CPU). "
            "Or train your own (notebooks/, or `python -m helpers train MODEL --out DIR`), export them with "
            "helpers.checkpoint.export_weights into one folder and pass --weights DIR.",
            file=sys.stderr,
        )
        return 1
    restorer = Restorer.from_weights(weights_dir, device=args.device)
    # first frames of every sequence first, so the grid's two examples show different scenes
    pairs = sorted(pairs_for("sample", "test"), key=lambda pair: (Path(pair.name).name, pair.sequence))
    out = Path(args.out)
    evaluation = evaluate_cascade(restorer, pairs, keep_examples=2, save_dir=out / "restored")
    title = f"Demo: the cascade on the sample set's {len(pairs)} test frames (640x360 blurry -> 1280x720)"
    paths = save_evaluation(evaluation, out, "demo", title)
    print(f"{title}\n\n{format_table(evaluation.table)}\n")
    print(f"restored images in {out / 'restored'}; wrote " + ", ".join(str(path) for path in paths.values()))
    return 0
