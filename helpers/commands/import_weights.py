"""``python -m helpers import-weights KIND SOURCE -o OUT``: published weights converted into a checkpoint."""

from __future__ import annotations

import argparse
import sys

from ..import_weights import import_weights

__all__ = ["add_parser", "import_weights_command"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``import-weights`` command's flags."""
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


def import_weights_command(args: argparse.Namespace) -> int:
    """``python -m helpers import-weights KIND SOURCE -o OUT``: exit 0 when written, 2 with one line when refused."""
    try:
        written = import_weights(args.kind, args.source, args.output, overwrite=args.overwrite)
    except (OSError, ValueError) as error:
        print(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 2
    print(f"wrote {written} ({args.kind} from {args.source})")
    return 0
