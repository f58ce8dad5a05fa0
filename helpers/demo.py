"""``python -m helpers demo``: restore the embedded samples with the bundled weights (placeholder).

Until the pipeline lands this prints what the demo will do; see README.
"""

from __future__ import annotations

import argparse


def demo_command(args: argparse.Namespace) -> int:
    """Explain the demo; the real one restores samples into ``args.out`` and prints the ablation table."""
    print(
        "demo (placeholder): will build the embedded sample set, restore its blurry 640x360 frames to 1280x720 "
        f"with DnCNN -> UNet -> EDSR -> unsharp mask using weights/, and write images, a grid and a table to {args.out}"
    )
    return 0
