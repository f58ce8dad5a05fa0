"""The command line, ``python -m helpers COMMAND``: one module per command, each its flags and its run.

``train`` (one network, or the cascade end to end), ``restore`` (images, folders, videos), ``evaluate``
(ablation tables), ``demo`` (``make demo``), ``notebooks`` and ``colab-links``, ``import-weights``
and ``calibrate-deblur``. Library modules take plain values; only these modules read
``argparse.Namespace``. Only the named command's module is imported, so ``colab-links`` runs without
torch installed (a fork is pointed at itself before anything heavy is installed).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, NamedTuple, Sequence

__all__ = ["COMMANDS", "build_parser", "command_function", "main"]


class Command(NamedTuple):
    """Where a command lives: its module, the function adding its flags, the function running it."""

    module: str
    add_parser: str
    run: str


COMMANDS = {
    "train": Command("helpers.commands.train", "add_parser", "train_command"),
    "restore": Command("helpers.commands.restore", "add_parser", "restore_command"),
    "evaluate": Command("helpers.commands.evaluate", "add_parser", "evaluate_command"),
    "demo": Command("helpers.commands.demo", "add_parser", "demo_command"),
    "notebooks": Command("helpers.commands.notebooks", "add_notebooks_parser", "notebooks_command"),
    "colab-links": Command("helpers.commands.notebooks", "add_colab_links_parser", "colab_links_command"),
    "import-weights": Command("helpers.commands.import_weights", "add_parser", "import_weights_command"),
    "calibrate-deblur": Command("helpers.commands.calibrate", "add_parser", "calibrate_command"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command's flags, or only those of the command ``only`` (imports just its module)."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        if only is None or name == only:
            getattr(importlib.import_module(command.module), command.add_parser)(commands)
    return parser


def command_function(name: str) -> Callable[[argparse.Namespace], int | None]:
    """The function that runs the command ``name`` with its parsed arguments."""
    command = COMMANDS[name]
    return getattr(importlib.import_module(command.module), command.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    arguments = list(argv) if argv is not None else sys.argv[1:]
    named = arguments[0] if arguments and arguments[0] in COMMANDS else None
    args = build_parser(only=named).parse_args(arguments)
    return int(command_function(args.command)(args) or 0)
