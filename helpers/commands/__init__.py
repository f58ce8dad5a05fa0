"""The command line, ``python -m helpers COMMAND``: one module per command, each its flags and its run.

``train`` (one network, or the cascade end to end), ``restore`` (images, folders, videos), ``evaluate``
(ablation tables), ``demo`` (``make demo``), ``notebooks`` and ``colab-links``, ``import-weights``
and ``calibrate-deblur``. Library modules take plain values; only these modules read
``argparse.Namespace``. A command's work is imported when it runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Sequence

from . import calibrate, demo, evaluate, import_weights, notebooks, restore, train

__all__ = ["COMMANDS", "build_parser", "main"]

# command -> (module, function) that receives the parsed arguments and returns an exit code
COMMANDS = {
    "train": ("helpers.commands.train", "train_command"),
    "restore": ("helpers.commands.restore", "restore_command"),
    "evaluate": ("helpers.commands.evaluate", "evaluate_command"),
    "demo": ("helpers.commands.demo", "demo_command"),
    "notebooks": ("helpers.commands.notebooks", "notebooks_command"),
    "colab-links": ("helpers.commands.notebooks", "colab_links_command"),
    "import-weights": ("helpers.commands.import_weights", "import_weights_command"),
    "calibrate-deblur": ("helpers.commands.calibrate", "calibrate_command"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (train.add_parser, restore.add_parser, evaluate.add_parser, demo.add_parser, notebooks.add_notebooks_parser,
                notebooks.add_colab_links_parser, import_weights.add_parser, calibrate.add_parser):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    module_name, function_name = COMMANDS[args.command]
    command = getattr(importlib.import_module(module_name), function_name)
    return int(command(args) or 0)
