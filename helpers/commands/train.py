"""``python -m helpers train MODEL`` and ``train cascade``: flags -> the recipe dict -> ``fit``.

The flags only become the config dict a notebook writes by hand (``config_from_args``); the datasets
and the network come from it through ``helpers.recipes``, as in the notebooks, and it is stored in
every checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any

from .. import recipes
from ..cascade import DEFAULT_CASCADE_LOSS, build_cascade_loss, export_cascade, load_cascade
from ..checkpoint import CheckpointError, load_checkpoint
from ..safe_writes import exclusive_lock
from ..losses import build_loss
from ..pipeline import DEFAULT_WEIGHTS_DIR
from ..training import LAST_CHECKPOINT, RUN_LOCK, TrainConfig, TrainingDiverged, check_resumable, distributed, fit, main_process_first
from ..training.reproducibility import seed_everything
from .options import NETWORKS, DATA_HELP, add_device, aux_weights, checked, share, sigma, stage_list

__all__ = ["add_parser", "arch_arguments", "config_from_args", "train_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``train`` command's flags: one per recipe setting (``helpers.recipes.DATA_DEFAULTS``), plus the run's."""
    parser = commands.add_parser("train", help="train one network of the cascade, or fine-tune the cascade end to end")
    parser.add_argument("model", choices=[*NETWORKS, "cascade"])
    parser.add_argument("--data", default="sample", help=DATA_HELP)
    parser.add_argument("--arch", type=arch_arguments, default=None, metavar="KEY=VALUE,...",
                        help="the network's constructor arguments (the recipe's arch; default: its defaults), lists "
                             "dash-separated, e.g. unet: block=nafnet,width=16,enc_blocks=1-1-1-2,dec_blocks=1-1-1-1")
    parser.add_argument("--out", required=True, help="checkpoint folder (last.pt, best.pt)")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=None,
                        help="training patch size (input side; default: dncnn 50, unet 128, edsr 48, cascade 128)")
    parser.add_argument("--lr", type=positive_number, default=None, help="default: dncnn 3e-4, unet 3e-4, edsr 2e-4, cascade 5e-5")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (default: on for CUDA, off on CPU)")
    parser.add_argument("--amp-dtype", choices=["float16", "bfloat16"], default=None,
                        help="autocast type (default: float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory layout")
    parser.add_argument("--deterministic", action="store_true",
                        help="reproducible CUDA runs (deterministic cuDNN kernels, no autotuning; slower): what makes "
                             "--resume match an uninterrupted run bit for bit on a GPU, as it always does on the CPU")
    parser.add_argument("--grad-clip", type=positive_number, default=None, help="clip the gradient norm to this value")
    parser.add_argument("--early-stop", type=non_negative_int, default=10,
                        help="epochs without improvement before stopping (0: never)")
    parser.add_argument("--sigma", type=noise_sigma, default=(0.0, 55.0),
                        help="dncnn and cascade noise level (0-255): a number, or LOW,HIGH drawn per patch (default 0,55)")
    parser.add_argument("--val-sigma", type=noise_sigma, default=None,
                        help="dncnn and cascade validation noise level (default: --sigma)")
    parser.add_argument("--clean-fraction", type=float, default=0.0, metavar="P",
                        help="dncnn, cascade: probability that a training patch gets no noise, so the denoiser learns to "
                             "leave clean frames alone (validation is always noisy)")
    parser.add_argument("--blurry-fraction", type=float, default=0.0, metavar="P",
                        help="dncnn: probability that a training patch is cut from the blurry frame instead of the "
                             "sharp one (the cascade denoises blurry frames; validation uses sharp ones)")
    parser.add_argument("--colour-augment", type=float, default=0.0, metavar="P",
                        help="probability that a training patch pair gets a random channel order and channel gains "
                             "(more colours from a small set: a denoiser trained on few colour photos greys saturated ones)")
    parser.add_argument("--val-fraction", type=share, default=None,
                        help="share of training sequences (photos: of each folder's photos) held out (default 0.2; photos 0.05)")
    parser.add_argument("--val-patch", type=int, default=128, help="validation crop size (0: whole frames)")
    parser.add_argument("--val-crops", type=int, default=4, help="fixed validation crops per frame (with --val-patch)")
    parser.add_argument("--samples-per-frame", type=int, default=None,
                        help="training patches per frame and epoch (default: enough for --steps-per-epoch)")
    parser.add_argument("--synthetic-blur", type=float, default=0.0, metavar="P",
                        help="unet: probability that a training input is a fresh synthetic motion blur of its sharp "
                             "patch instead of the stored blurry frame (validation always uses stored pairs)")
    parser.add_argument("--extra", default=None, metavar="SPEC",
                        help="unet: extra training pairs, e.g. realblur:PATH (every training scene, never validated on)")
    parser.add_argument("--extra-ratio", type=float, default=0.0, metavar="P",
                        help="unet: share of training patches drawn from --extra (e.g. 0.3)")
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
    add_device(parser)
    cascade = parser.add_argument_group("cascade", "`train cascade`: fine-tune DnCNN -> UNet -> EDSR end to end "
                                        "(--init: a folder of stage weights, default weights/, or a cascade checkpoint)")
    cascade.add_argument("--freeze", type=stage_list, default=[], metavar="STAGES",
                         help="comma-separated stages whose weights stay as they are (e.g. dncnn)")
    cascade.add_argument("--unsharp", choices=["fixed", "learnable", "off"], default="fixed",
                         help="the unsharp mask after EDSR: fixed (default: the seed's filter), learnable (its amount, "
                              "bounded to (0, 2), is trained and the exported weights carry it), off (the output is EDSR's)")
    cascade.add_argument("--aux-weights", type=aux_weights, default=None, metavar="W|STAGE=W,...",
                         help="weights of the per-stage auxiliary losses that keep each network doing its own job "
                              "(default 0.5 each; 0 switches one off)")
    cascade.add_argument("--checkpointing", action="store_true",
                         help="gradient checkpointing per stage: far less memory for one more forward pass")


def positive_int(text: str) -> int:
    """A whole number of at least 1 (an epoch count: 0 or fewer would train nothing and say nothing)."""
    return checked(text, int, lambda value: value >= 1, "a whole number of at least 1")


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (0 switches the option off)."""
    return checked(text, int, lambda value: value >= 0, "a whole number of at least 0 (0: off)")


def positive_number(text: str) -> float:
    """A finite number above 0 (a learning rate, a gradient-norm bound: NaN or inf would train on NaN)."""
    return checked(text, float, lambda value: math.isfinite(value) and value > 0, "a finite number above 0")


def noise_sigma(text: str) -> float | tuple[float, float]:
    """``options.sigma`` on the 0-255 scale, finite: NaN noise would train on NaN."""
    value = sigma(text)
    if not all(math.isfinite(part) and 0 <= part <= 255 for part in (value if isinstance(value, tuple) else (value,))):
        raise argparse.ArgumentTypeError(f"expected noise levels between 0 and 255, received {text!r}")
    return value


def arch_arguments(text: str) -> dict[str, Any]:
    """'block=nafnet,width=16,enc_blocks=1-1-1-2' -> {'block': 'nafnet', 'width': 16, 'enc_blocks': [1, 1, 1, 2]}."""
    def value(item: str) -> Any:
        parts = item.split("-")
        if all(part.isdigit() for part in parts):
            return [int(part) for part in parts] if len(parts) > 1 else int(item)
        return item

    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if not pairs or any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE,... (e.g. block=nafnet,width=16), received {text!r}")
    return {key.strip(): value(item.strip()) for key, item in pairs}


# Flags that are recipe data settings, under the name the recipe gives them (``helpers.recipes.DATA_DEFAULTS``).
DATA_FLAGS = ("patch", "val_patch", "val_fraction", "samples_per_frame", "val_crops", "sigma", "val_sigma", "clean_fraction",
              "blurry_fraction", "colour_augment", "synthetic_blur", "extra", "extra_ratio", "kernels", "kernel_fraction",
              "nonuniform_fraction", "sharp_fraction", "min_scale", "downscale_kernels", "val_items", "cascade_weights")


def _loss(args: argparse.Namespace) -> dict[str, Any]:
    if args.model == "cascade":
        stage_weights = {**DEFAULT_CASCADE_LOSS["stage_weights"], **(args.aux_weights or {})}
        return {**DEFAULT_CASCADE_LOSS, "stage_weights": stage_weights}
    loss: dict[str, Any] = {"weights": dict(recipes.STAGE_DEFAULTS[args.model].loss["weights"])}
    if args.perceptual_weights:
        loss["weights"]["perceptual"] = args.perceptual_weight
        loss["perceptual"] = {"weights": args.perceptual_weights}
    return loss


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe dict the flags describe: what a notebook's ``CONFIG`` would be for the same run."""
    stage = args.model
    given = {"source": args.data, **{name: getattr(args, name) for name in DATA_FLAGS}}
    data = recipes.data_settings(stage, {"data": given})  # recorded whole: defaults resolved, as the run used them
    if stage == "cascade":
        data["init"] = str(Path(args.init) if args.init else DEFAULT_WEIGHTS_DIR)
    elif args.init:
        data["init"] = str(args.init)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr or recipes.STAGE_DEFAULTS[stage].lr, batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch, num_workers=args.num_workers, amp=args.amp, amp_dtype=args.amp_dtype,
        grad_clip=args.grad_clip, early_stop_patience=args.early_stop or None, plateau_patience=args.plateau_patience,
        seed=args.seed, channels_last=args.channels_last, deterministic=args.deterministic, loss=_loss(args), data=data,
        arch=args.arch or {},
    )
    return {name: value for name, value in vars(config).items() if name != "arch" or value}


def _cache_dir(args: argparse.Namespace) -> dict[str, Any]:
    if args.cache_dir is None:
        return {}
    return {"cache_dir": None if args.cache_dir == "none" else Path(args.cache_dir)}


def _train(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """Build the recipe's data and network under the process group, then ``fit`` (and export a cascade)."""
    with distributed(args.device) as (info, device):
        if args.model == "cascade":
            model, config["data"]["origin"] = load_cascade(config["data"]["init"], unsharp=args.unsharp,
                                                           freeze=args.freeze, checkpointing=args.checkpointing)
            loss = build_cascade_loss(config["loss"])
        else:
            model, loss = recipes.build_model(args.model, config), build_loss(config["loss"])
        with main_process_first(info):
            train_data, val_data = recipes.build_datasets(args.model, config, world_size=info.world_size, **_cache_dir(args))
        seed_everything(args.seed)
        fit(model, train_data, val_data, loss, config=config, checkpoint_dir=args.out, resume=args.resume, device=device,
            cascade_validation=recipes.cascade_validation(args.model, config))
        if args.model == "cascade" and info.is_main:
            written = export_cascade(Path(args.out) / "best.pt", Path(args.out) / "weights")
            print(f"exported the best epoch to {', '.join(str(path) for path in written.values())}")


def train_command(args: argparse.Namespace) -> int:
    """Run ``python -m helpers train``: 0 when trained, 1 when the run diverged, 2 on set-up errors (one line).

    The run folder is locked for the run (``OUT/.lock``, by the main process): a second training into it is refused,
    naming the first one's PID, so ``best.pt`` and ``last.pt`` always come from one run.
    """
    config = config_from_args(args)
    out = Path(args.out)
    last = out / LAST_CHECKPOINT
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 holds the lock for all
    try:
        with exclusive_lock(out, out / RUN_LOCK) if main_process else contextlib.nullcontext():
            if args.resume and last.is_file() and args.model != "cascade":  # refuse a resume that cannot work before building data
                check_resumable(last, load_checkpoint(last), TrainConfig(**config), arch=None)
            _train(args, config)
    except TrainingDiverged as error:  # the run itself failed; its last good checkpoint is kept
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (CheckpointError, OSError, ValueError) as error:  # bad --init/--resume file, data or options: setup errors
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    return 0
