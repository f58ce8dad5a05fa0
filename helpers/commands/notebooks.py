"""``python -m helpers notebooks`` (execute the series) and ``colab-links`` (point badges and setup cells at a fork)."""

from __future__ import annotations

import argparse

__all__ = ["add_notebooks_parser", "add_colab_links_parser"]


def add_notebooks_parser(commands: argparse._SubParsersAction) -> None:
    """The ``notebooks`` command's flags."""
    parser = commands.add_parser("notebooks", help="execute the five notebooks in order (quick mode: sample data, CPU)")
    parser.add_argument("--out", default="outputs/notebooks", help="folder for the executed copies")
    parser.add_argument("--full", action="store_true", help="the notebooks' own parameters instead of quick mode")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only notebooks whose names start with these (e.g. 01 05)")


def add_colab_links_parser(commands: argparse._SubParsersAction) -> None:
    """The ``colab-links`` command's flags."""
    parser = commands.add_parser(
        "colab-links", help="point every Colab badge and notebook setup cell at your fork",
        description="Rewrites the repository address in helpers/colab.py, then every notebook's 'Open in Colab' badge "
        "and setup cell and the README's badges from it. Commit and push the result.",
    )
    parser.add_argument("repo", metavar="OWNER/NAME", help="the GitHub repository, as in github.com/OWNER/NAME")
    parser.add_argument("--branch", default="main", help="branch the badges open and the setup cells clone (default: main)")
    parser.add_argument("--clone-url", default=None,
                        help="what the setup cells clone instead of https://github.com/OWNER/NAME (a mirror)")
