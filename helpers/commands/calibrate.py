"""``python -m helpers calibrate-deblur``: measure a UNet's deblur-gate ramp on sharp photos and record it."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..calibrate import SHARP_SHARE, calibrate_deblur_ramp, record_deblur_ramp
from ..checkpoint import load_model
from ..data import load_blur_kernels
from ..evaluate import format_table
from ..io import list_images
from .options import add_device

__all__ = ["add_parser", "calibrate_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``calibrate-deblur`` command's flags."""
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
    add_device(parser)


def calibrate_command(args: argparse.Namespace) -> int:
    """``python -m helpers calibrate-deblur``: print the table, write the ramp; exit 2 with one line when refused."""
    try:
        if args.limit < 0:
            raise ValueError(f"--limit: expected 0 (all photos) or more, received {args.limit}")
        photos = [path for folder in args.photos for path in list_images(folder)]
        if args.limit:
            photos = photos[:: max(1, math.ceil(len(photos) / args.limit))]
        kernels = load_blur_kernels(args.kernels) if args.kernels else []
        calibration = calibrate_deblur_ramp(load_model(args.unet, expected_name="unet"), photos, kernels, args.seed, args.device)
        print(format_table(calibration.table))
        low, high = calibration.ramp
        chosen = next(row for row in calibration.table if row["ramp"] == f"({low:.3f}, {high:.3f})")
        print(f"chosen ramp ({low:.3f}, {high:.3f}): the lowest at which the sharp photos keep at most {SHARP_SHARE:.0%} of "
              f"the correction (they keep {chosen['sharp photos: mean share']}); blurred gain there "
              f"{chosen['blurred gain (dB)']} dB, with all of the correction {calibration.always_gain:+.3f} dB; "
              f"{calibration.photos} photos")
        if args.output:
            print(f"wrote {record_deblur_ramp(args.unet, calibration.ramp, args.output)} with deblur_ramp ({low:.3f}, {high:.3f})")
    except (OSError, ValueError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0
