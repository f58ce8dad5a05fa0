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
}

DATA_HELP = "sample (embedded set, no download), gopro:PATH, realblur:PATH or folder:PATH (your own sharp photos)"


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: CUDA when present")


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train one network of the cascade")
    parser.add_argument("model", choices=["dncnn", "unet", "edsr"])
    parser.add_argument("--data", default="sample", help=DATA_HELP)
    parser.add_argument("--out", required=True, help="checkpoint folder (last.pt, best.pt)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64, help="training patch size (input side)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (default: on for CUDA, off on CPU)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--seed", type=int, default=0)
    _add_device(parser)


def _add_restore_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("restore", help="restore images, folders of images, or videos")
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    parser.add_argument("-o", "--output", required=True, help="a file for one input, a folder for several")
    parser.add_argument("--weights", default=None, help="folder with dncnn.pt, unet.pt, edsr.pt (default: bundled demo weights)")
    parser.add_argument("--scale", type=int, default=2, choices=[1, 2])
    parser.add_argument("--stages", default="dncnn,unet,edsr,unsharp")
    parser.add_argument("--tile", type=int, default=0, help="tile size in input pixels (0: whole image)")
    parser.add_argument("--fp32", action="store_true", help="never use half precision")
    parser.add_argument("--overwrite", action="store_true")
    _add_device(parser)


def _add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="ablation table: each cumulative stage against classical baselines")
    parser.add_argument("--data", default="sample", help=DATA_HELP)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default="outputs/evaluate")
    _add_device(parser)


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="restore the embedded samples and print the evaluation table")
    parser.add_argument("--out", default="outputs/demo")
    _add_device(parser)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train_parser, _add_restore_parser, _add_evaluate_parser, _add_demo_parser):
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
