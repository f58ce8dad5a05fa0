"""Command line: ``python -m helpers {train,restore,evaluate,demo,notebooks,colab-links,import-weights}``.

This module only parses arguments; each command's work lives in the module named by its concern
(``train``, ``restore``, ``evaluate``, ``demo``, ``import_weights``) and is imported when the command runs, so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path
from typing import Sequence

# command -> (module, function) that receives the parsed arguments and returns an exit code
COMMANDS = {
    "train": ("helpers.train", "train_command"),
    "restore": ("helpers.restore", "restore_command"),
    "evaluate": ("helpers.report", "evaluate_command"),
    "demo": ("helpers.demo", "demo_command"),
    "notebooks": ("helpers.notebooks", "notebooks_command"),
    "colab-links": ("helpers.notebooks", "colab_links_command"),
    "import-weights": ("helpers.import_weights", "import_weights_command"),
    "calibrate-deblur": ("helpers.calibrate", "calibrate_command"),
}

NETWORKS = ("dncnn", "unet", "edsr")
DATA_HELP = ("sample (embedded set, no download), gopro:PATH, realblur:PATH, folder:PATH (your own sharp frames, made "
             "1280x720) or, for training, photos:DIR[=SHARE][,DIR2[=SHARE]...] (sharp photos at native resolution, "
             "degraded on the fly)")


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


def _stage_list(text: str) -> list[str]:
    """'dncnn,unet' -> ['dncnn', 'unet'], each a network stage."""
    stages = [stage.strip() for stage in text.split(",") if stage.strip()]
    unknown = sorted(set(stages) - set(NETWORKS))
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"expected stages among {', '.join(NETWORKS)}, received {text!r}")
    return stages


def _aux_weights(text: str) -> dict[str, float]:
    """'0.5' -> {each stage: 0.5}; 'dncnn=0.2,unet=0' -> those stages only."""
    try:
        if "=" not in text:
            return dict.fromkeys(NETWORKS, float(text))
        weights = {stage.strip(): float(value) for stage, value in (part.split("=", 1) for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W or STAGE=W,..., received {text!r}") from None
    if set(weights) - set(NETWORKS):
        raise argparse.ArgumentTypeError(f"expected stages among {', '.join(NETWORKS)}, received {text!r}")
    return weights


def _add_cascade_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cascade", "`train cascade`: fine-tune DnCNN -> UNet -> EDSR end to end "
                                      "(--init: a folder of stage weights, default weights/, or a cascade checkpoint)")
    group.add_argument("--freeze", type=_stage_list, default=[], metavar="STAGES",
                       help="comma-separated stages whose weights stay as they are (e.g. dncnn)")
    group.add_argument("--unsharp", choices=["fixed", "learnable", "off"], default="fixed",
                       help="the unsharp mask after EDSR: fixed (default: the seed's filter), learnable (its amount, "
                            "bounded to (0, 2), is trained and the exported weights carry it), off (the output is EDSR's)")
    group.add_argument("--aux-weights", type=_aux_weights, default=None, metavar="W|STAGE=W,...",
                       help="weights of the per-stage auxiliary losses that keep each network doing its own job "
                            "(default 0.5 each; 0 switches one off)")
    group.add_argument("--checkpointing", action="store_true",
                       help="gradient checkpointing per stage: far less memory for one more forward pass")


def _share(text: str) -> float:
    """A share strictly between 0 and 1 (a held-out fraction: some data must be left on each side)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 (exclusive), received {text!r}")
    return value


def _max_pixels(text: str) -> int:
    """A pixel limit: a positive integer up to Pillow's own decompression-bomb ceiling (its header parser's)."""
    from PIL import Image

    ceiling = 2 * Image.MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, received {text!r}") from None
    if not 0 < value <= ceiling:
        raise argparse.ArgumentTypeError(f"expected 1 to {ceiling:,} pixels (Pillow's ceiling), received {text}")
    return value


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train one network of the cascade, or fine-tune the cascade end to end")
    parser.add_argument("model", choices=[*NETWORKS, "cascade"])
    parser.add_argument("--data", default="sample", help=DATA_HELP)
    parser.add_argument("--out", required=True, help="checkpoint folder (last.pt, best.pt)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=None,
                        help="training patch size (input side; default: dncnn 50, unet 128, edsr 48, cascade 128)")
    parser.add_argument("--lr", type=float, default=None, help="default: dncnn 3e-4, unet 3e-4, edsr 2e-4, cascade 5e-5")
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
                        help="dncnn and cascade noise level (0-255): a number, or LOW,HIGH drawn per patch (default 0,55)")
    parser.add_argument("--clean-fraction", type=float, default=0.0, metavar="P",
                        help="dncnn, cascade: probability that a training patch gets no noise, so the denoiser learns to "
                             "leave clean frames alone (validation is always noisy)")
    parser.add_argument("--blurry-fraction", type=float, default=0.0, metavar="P",
                        help="dncnn: probability that a training patch is cut from the blurry frame instead of the "
                             "sharp one (the cascade denoises blurry frames; validation uses sharp ones)")
    parser.add_argument("--colour-augment", type=float, default=0.0, metavar="P",
                        help="probability that a training patch pair gets a random channel order and channel gains "
                             "(more colours from a small set: a denoiser trained on few colour photos greys saturated ones)")
    parser.add_argument("--val-fraction", type=_share, default=None,
                        help="share of training sequences (photos: of each folder's photos) held out (default 0.2; photos 0.05)")
    parser.add_argument("--val-patch", type=int, default=128, help="validation crop size (0: whole frames)")
    parser.add_argument("--synthetic-blur", type=float, default=0.0, metavar="P",
                        help="unet: probability that a training input is a fresh synthetic motion blur of its sharp "
                             "patch instead of the stored blurry frame (validation always uses stored pairs)")
    photos = parser.add_argument_group("photos: sources (patches of sharp photos at native resolution, degraded on the fly)")
    photos.add_argument("--kernels", default=None, metavar="NPZ",
                        help="real blur kernels (.npz of 2-D arrays), used beside synthetic camera trajectories")
    photos.add_argument("--kernel-fraction", type=float, default=0.5, metavar="P",
                        help="share of blurs made with a real kernel (rotated, flipped, scaled) when --kernels is given")
    photos.add_argument("--nonuniform-fraction", type=float, default=0.2, metavar="P",
                        help="share of blurs that vary across the patch (two blurs blended along a direction)")
    photos.add_argument("--sharp-fraction", type=float, default=0.0, metavar="P",
                        help="unet: share of training inputs left unblurred (a deblurrer must leave sharp pictures alone)")
    photos.add_argument("--min-scale", type=float, default=0.5,
                        help="photos are shrunk by a random factor in [MIN_SCALE, 1] before cutting (never enlarged)")
    photos.add_argument("--downscale-kernels", default="area,bicubic,opencv-bicubic",
                        help="edsr: the kernels low-resolution inputs are made with, drawn per patch (one named twice: "
                             "drawn twice as often)")
    photos.add_argument("--val-items", type=int, default=96, help="held-out validation patches (fixed by --seed)")
    photos.add_argument("--cascade-weights", default=None, metavar="DIR",
                        help="after every epoch, also validate the whole cascade with the network in training and the "
                             "other stages' weights from DIR (default: the bundled weights/; 'none': off)")
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
    _add_cascade_options(parser)


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
            "  (what a file is, is decided by its content; hidden and .partial files in folders are skipped)\n"
            "failures: each bad file is reported and skipped; exit code 1 if any failed, 2 on setup errors;\n"
            "  --skip-existing resumes an interrupted batch"
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
    parser.add_argument("--denoise", choices=["auto", "always"], default="auto",
                        help="auto (default): DnCNN only as far as each image is noisy (estimated noise sigma 4-6 of "
                             "255 ramps it in), so clean photos and frames are not smoothed; always: on every image")
    parser.add_argument("--deblur", choices=["auto", "always"], default="auto",
                        help="auto (default): the UNet's correction kept only as far as each image asks for it (its size "
                             "against the image's own edges), so sharp photos are not oversharpened; always: all of it")
    parser.add_argument("--self-ensemble", type=_stage_list, default=[], metavar="STAGES",
                        help="comma-separated networks (e.g. unet or unet,edsr) run on the 8 flips and transposes of "
                             "their input, averaged: better results for 8x those stages' time (default: none)")
    parser.add_argument("--max-pixels", type=_max_pixels, default=None,
                        help="refuse images and video frames of more pixels, from their header, before decoding "
                             "(default 67,108,864 = 8192x8192: 8K frames and 61 MP photos pass); the README says "
                             "how much memory a size needs")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep outputs that exist and go on (resumes an interrupted batch; reported as skipped)")
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
    parser.add_argument("--noise-protocol", default="clipped", choices=["clipped", "paper"],
                        help="denoise: clipped = noisy image clipped to [0, 1] and rounded to 8 bits (a saved photo; "
                             "default); paper = float noise, unclipped, as in published tables")
    parser.add_argument("--scale", type=int, default=2, help="sr: upscaling factor")
    parser.add_argument("--downscale", default="area", choices=["area", "bicubic", "opencv-bicubic"],
                        help="sr: how the low-res input is made (area: like the sample set's frames; bicubic: antialiased, "
                             "like published tables; opencv-bicubic: cv2.INTER_CUBIC, aliased)")
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


def _add_colab_links_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "colab-links", help="point every Colab badge and notebook setup cell at your fork",
        description="Rewrites the repository address in helpers/colab.py, then every notebook's 'Open in Colab' badge "
        "and setup cell and the README's badges from it. Commit and push the result.",
    )
    parser.add_argument("repo", metavar="OWNER/NAME", help="the GitHub repository, as in github.com/OWNER/NAME")
    parser.add_argument("--branch", default="main", help="branch the badges open and the setup cells clone (default: main)")
    parser.add_argument("--clone-url", default=None,
                        help="what the setup cells clone instead of https://github.com/OWNER/NAME (a mirror)")


def _add_import_weights_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import-weights",
        help="convert published weights (the DnCNN authors' MatConvNet models, EDSR-PyTorch) into a checkpoint",
        description="dncnn-matconvnet: a MatConvNet .mat (v7.3 or v5) of the DnCNN authors' colour models, e.g. "
        "GD_Color_Blind.mat (CDnCNN-B). edsr-pytorch: an EDSR-PyTorch state dict, e.g. edsr_baseline_x2-1bc95232.pt "
        "(verified on the file's published structure only). Their normalisation is folded exactly into this "
        "project's; the checkpoint loads like any other (evaluate --weights OUT.pt, restore --weights).",
    )
    parser.add_argument("kind", choices=["dncnn-matconvnet", "edsr-pytorch"])
    parser.add_argument("source", help="the published file")
    parser.add_argument("-o", "--output", required=True, help="checkpoint to write (e.g. outputs/cdncnn_b.pt)")
    parser.add_argument("--overwrite", action="store_true")


def _add_calibrate_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calibrate-deblur", help="measure where a UNet's deblur gate should start, on your sharp photos, and record it",
        description="Runs the UNet on each photo sharp and blurred (synthetic camera shake; real kernels with "
        "--kernels) and picks the gate's ramp: the lowest at which the sharp photos keep at most 1% of the "
        "correction, so that sharp frames are left alone and mildly blurred ones keep as much deblurring as that "
        "allows (helpers.calibrate). Use photos like your frames, not your evaluation images.",
    )
    parser.add_argument("unet", type=Path, help="UNet weights (exported or a training checkpoint)")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of sharp photos")
    parser.add_argument("--kernels", type=Path, default=None, help="real blur kernels (.npz of 2-D arrays)")
    parser.add_argument("--limit", type=int, default=0, help="use about this many photos, spread over the folders (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic blurs")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="write the UNet's weights here with the ramp recorded (may be the UNet file itself)")
    _add_device(parser)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train_parser, _add_restore_parser, _add_evaluate_parser, _add_demo_parser, _add_notebooks_parser,
                _add_colab_links_parser, _add_import_weights_parser, _add_calibrate_parser):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    module_name, function_name = COMMANDS[args.command]
    if args.command == "train" and args.model == "cascade":  # the cascade's trainer builds on helpers.train, not in it
        module_name, function_name = "helpers.cascade", "train_cascade_command"
    command = getattr(importlib.import_module(module_name), function_name)
    return int(command(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
