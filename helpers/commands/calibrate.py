"""``python -m helpers calibrate-deblur``: measure a UNet's deblur-gate ramp on sharp photos and record it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_device

__all__ = ["add_parser"]


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
