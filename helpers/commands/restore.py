"""``python -m helpers restore``: the flags, then ``helpers.restore.restore_files`` with the cascade they describe."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from typing import Iterator

from ..io import DEFAULT_MAX_PIXELS
from ..pipeline import Restorer, parse_strength
from ..restore import RestoreInterrupted, restore_files
from .options import add_device, max_pixels, stage_list

__all__ = ["add_parser", "restore_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``restore`` command's flags."""
    parser = commands.add_parser(
        "restore",
        help="restore images, folders of images, or videos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "inputs: images (.png .jpg .jpeg .bmp .tif .tiff .webp .avif), folders of images, videos (.mp4 .avi .mov .mkv)\n"
            "outputs: one input file -> OUT is the output file; several inputs or a folder -> OUT is a folder and\n"
            "  outputs keep their input's name; videos become <stem>.mp4 (mp4v, same frame rate, no audio;\n"
            "  an odd width or height is padded to even, with a note)\n"
            "formats: grey stays grey; transparency (RGBA, grey+alpha, palette+transparency) is kept, resized\n"
            "  bilinearly, and written RGBA; palette images without transparency become RGB; animated images\n"
            "  are restored as their first frame, with a note; 16-bit images are restored at 8-bit precision and\n"
            "  written back 16-bit (PNG/TIFF) or 8-bit (others)\n"
            "  (what a file is, is decided by its content; hidden files in folders, ours among them, are skipped)\n"
            "failures: each bad file is reported and skipped; exit code 1 if any failed, 2 on setup errors;\n"
            "  Ctrl-C or SIGTERM stops with one line and no partial output (exit 130 or 143);\n"
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
    parser.add_argument("--self-ensemble", type=stage_list, default=[], metavar="STAGES",
                        help="comma-separated networks (e.g. unet or unet,edsr) run on the 8 flips and transposes of "
                             "their input, averaged: better results for 8x those stages' time (default: none)")
    parser.add_argument("--strength", type=strength, default=1.0, metavar="S|STAGE=S,...",
                        help="S from 0 to 1: blend the result with the input upscaled by plain bicubic (1, default: "
                             "all of the cascade; 0: bicubic); STAGE=S,... (e.g. unet=0.6,dncnn=0.3): keep that share of "
                             "each named stage's correction, on top of its automatic gate")
    parser.add_argument("--max-pixels", type=max_pixels, default=None,
                        help="refuse images and video frames of more pixels, from their header, before decoding "
                             "(default 67,108,864 = 8192x8192: 8K frames and 61 MP photos pass); the README says "
                             "how much memory a size needs")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep outputs that exist and go on (resumes an interrupted batch; reported as skipped)")
    add_device(parser)


def strength(text: str) -> float | dict[str, float]:
    """'0.7' -> 0.7; 'unet=0.6,dncnn=0.3' -> {'unet': 0.6, 'dncnn': 0.3}, each from 0 to 1 (``pipeline.parse_strength``)."""
    try:
        if "=" in text:
            value: float | dict[str, float] = {
                stage.strip().lower(): float(share) for stage, share in (part.split("=", 1) for part in text.split(","))
            }
        else:
            value = float(text)
        parse_strength(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected S or STAGE=S,... with each S from 0 to 1, received {text!r}"
                                         + (f" ({error})" if "strength" in str(error) else "")) from None
    return value


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-up runs."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the main thread for the block (Python's default would end without clean-up)."""
    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def restore_command(args: argparse.Namespace) -> int:
    """Run ``python -m helpers restore``; returns 0 when every input was restored, 1 when any failed, 2 on setup errors,
    130 (Ctrl-C) or 143 (SIGTERM) when interrupted, with one line and no partial output."""
    stages = [stage.strip().lower() for stage in args.stages.split(",") if stage.strip()]  # 'dncnn, EDSR' as typed
    scale = args.scale if args.scale is not None else (2 if "edsr" in stages else 1)
    with _sigterm_as_interrupt():
        try:
            restorer = Restorer.from_weights(
                args.weights, stages=stages, scale=scale, device=args.device, tile=args.tile, fp32=args.fp32,
                denoise=args.denoise, deblur=args.deblur, self_ensemble=args.self_ensemble, strength=args.strength,
            )
            restored, skipped, errors = restore_files(
                restorer, args.inputs, Path(args.output), args.overwrite, args.skip_existing,
                args.max_pixels or DEFAULT_MAX_PIXELS,
            )
        except (OSError, ValueError) as error:
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 2
        except RestoreInterrupted as interrupted:
            print(f"error: {interrupted}", file=sys.stderr)
            return 143 if isinstance(interrupted.interrupt, Terminated) else 130
        except KeyboardInterrupt as interrupt:  # while loading the weights: nothing written yet
            print("error: interrupted before any file was restored", file=sys.stderr)
            return 143 if isinstance(interrupt, Terminated) else 130
    print(f"restored {len(restored)}, " + (f"skipped {len(skipped)}, " if skipped else "") + f"failed {len(errors)}")
    return 1 if errors else 0
