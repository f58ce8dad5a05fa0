"""Command line: ``python -m helpers {train,restore,evaluate,demo}``.

This module only parses arguments; each command's work lives in the module named by its concern
(``train``, ``restore``, ``evaluate``, ``demo``) and is imported when the command runs, so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# command -> (module, function) that receives the parsed arguments and returns an exit code
COMMANDS = {
    "train": ("helpers.train", "train_command"),
    "restore": ("helpers.restore", "restore_command"),
    "evaluate": ("helpers.evaluate", "evaluate_command"),
    "demo": ("helpers.demo", "demo_command"),
    "notebooks": ("helpers.notebooks", "notebooks_command"),
}

DATA_HELP = "sample (embedded set, no download), gopro:PATH, realblur:PATH or folder:PATH (your own sharp photos)"


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: CUDA when present")


def _sigma(text: str) -> float | tuple[float, float]:
    """'25' -> 25.0; '0,55' -> (0.0, 55.0): a noise range drawn per patch (blind denoising)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, received {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] <= values[1]:
        return values
    raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH with LOW <= HIGH, received {text!r}")


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train one network of the cascade")
    parser.add_argument("model", choices=["dncnn", "unet", "edsr"])
    parser.add_argument("--data", default="sample", help=DATA_HELP)
    parser.add_argument("--out", required=True, help="checkpoint folder (last.pt, best.pt)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=None,
                        help="training patch size (input side; default: dncnn 50, unet 128, edsr 48)")
    parser.add_argument("--lr", type=float, default=None, help="default: dncnn 3e-4, unet 3e-4, edsr 2e-4")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (default: on for CUDA, off on CPU)")
    parser.add_argument("--amp-dtype", choices=["float16", "bfloat16"], default=None,
                        help="autocast type (default: float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory layout")
    parser.add_argument("--deterministic", action="store_true",
                        help="reproducible CUDA runs (deterministic cuDNN kernels, no autotuning; slower): what makes "
                             "--resume match an uninterrupted run bit for bit on a GPU, as it always does on the CPU")
    parser.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    parser.add_argument("--early-stop", type=int, default=10, help="epochs without improvement before stopping (0: never)")
    parser.add_argument("--sigma", type=_sigma, default=(0.0, 55.0),
                        help="dncnn noise level (0-255): a number, or LOW,HIGH drawn per patch (default 0,55)")
    parser.add_argument("--clean-fraction", type=float, default=0.0, metavar="P",
                        help="dncnn: probability that a training patch gets no noise, so the denoiser learns to "
                             "leave clean frames alone (validation is always noisy)")
    parser.add_argument("--blurry-fraction", type=float, default=0.0, metavar="P",
                        help="dncnn: probability that a training patch is cut from the blurry frame instead of the "
                             "sharp one (the cascade denoises blurry frames; validation uses sharp ones)")
    parser.add_argument("--colour-augment", type=float, default=0.0, metavar="P",
                        help="probability that a training patch pair gets a random channel order and channel gains "
                             "(more colours from a small set: a denoiser trained on few colour photos greys saturated ones)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of training sequences held out")
    parser.add_argument("--val-patch", type=int, default=128, help="validation crop size (0: whole frames)")
    parser.add_argument("--synthetic-blur", type=float, default=0.0, metavar="P",
                        help="unet: probability that a training input is a fresh synthetic motion blur of its sharp "
                             "patch instead of the stored blurry frame (validation always uses stored pairs)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--cache-dir", default=None, help="decoded-frame cache (default: the data cache; 'none': off)")
    parser.add_argument("--perceptual-weights", default=None,
                        help="add a MobileNetV3 perceptual loss: 'imagenet' (download) or a state-dict path")
    parser.add_argument("--perceptual-weight", type=float, default=0.01, help="weight of the perceptual term")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="start from these weights (a training checkpoint or exported weights of the same model) "
                             "with a fresh optimiser: fine-tuning; --resume from OUT/last.pt takes precedence")
    parser.add_argument("--plateau-patience", type=int, default=3,
                        help="epochs without a better validation loss before the learning rate is halved")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--seed", type=int, default=0)
    _add_device(parser)


def _add_restore_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "restore",
        help="restore images, folders of images, or videos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "inputs: images (.png .jpg .jpeg .bmp .tif .tiff .webp), folders of images, videos (.mp4 .avi .mov .mkv)\n"
            "outputs: one input file -> OUT is the output file; several inputs or a folder -> OUT is a folder and\n"
            "  outputs keep their input's name; videos become <stem>.mp4 (mp4v, same frame rate, no audio)\n"
            "formats: grey stays grey; RGBA keeps its alpha (resized bilinearly); palette images become RGB;\n"
            "  16-bit images are restored at 8-bit precision and written back 16-bit (PNG/TIFF) or 8-bit (others)\n"
            "failures: each bad file is reported and skipped; exit code 1 if any failed, 2 on setup errors"
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    parser.add_argument("-o", "--output", required=True, help="a file for one input, a folder for several")
    parser.add_argument("--weights", default=None, help="folder with dncnn.pt, unet.pt, edsr.pt (default: weights/)")
    parser.add_argument("--scale", type=int, default=None, choices=[1, 2],
                        help="2: EDSR upscaling, 1: enhance in place (default: 2 when edsr is among the stages, else 1)")
    parser.add_argument("--stages", default="dncnn,unet,edsr,unsharp",
                        help="comma-separated subset, always run in this order (default: all)")
    parser.add_argument("--tile", type=int, default=0,
                        help="tile size in input pixels, to bound memory on large images (default 0: whole images "
                             "up to 1280x720 input pixels, 512-pixel tiles above that)")
    parser.add_argument("--fp32", action="store_true", help="never use half precision")
    parser.add_argument("--overwrite", action="store_true")
    _add_device(parser)


def _add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
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
    parser.add_argument("--scale", type=int, default=2, help="sr: upscaling factor")
    parser.add_argument("--downscale", default="area", choices=["area", "bicubic"],
                        help="sr: how the low-res input is made (area: like the training data; bicubic: like published tables)")
    parser.add_argument("--seed", type=int, default=0, help="denoise/deblur: seed of the synthetic degradation")
    _add_device(parser)


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="restore the embedded samples and print the evaluation table")
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--weights", default=None, help="folder with dncnn.pt, unet.pt, edsr.pt (default: bundled weights/)")
    _add_device(parser)


def _add_notebooks_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("notebooks", help="execute the five notebooks in order (quick mode: sample data, CPU)")
    parser.add_argument("--out", default="outputs/notebooks", help="folder for the executed copies")
    parser.add_argument("--full", action="store_true", help="the notebooks' own parameters instead of quick mode")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only notebooks whose names start with these (e.g. 01 05)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train_parser, _add_restore_parser, _add_evaluate_parser, _add_demo_parser, _add_notebooks_parser):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    module_name, function_name = COMMANDS[args.command]
    command = getattr(importlib.import_module(module_name), function_name)
    return int(command(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
