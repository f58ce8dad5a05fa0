"""``python -m helpers notebooks`` (execute the series) and ``colab-links`` (point badges and setup cells at a fork)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_notebooks_parser", "add_colab_links_parser", "notebooks_command", "colab_links_command"]


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


def notebooks_command(args: argparse.Namespace) -> int:
    """``python -m helpers notebooks``: execute the series into ``args.out``; exit code 1 if a notebook fails."""
    from nbclient.exceptions import CellExecutionError

    from ..notebooks import NOTEBOOKS, run_notebooks

    names = [name for name in NOTEBOOKS if not args.only or any(name.startswith(prefix) for prefix in args.only)]
    try:
        run_notebooks(args.out, quick=not args.full, names=names)
    except CellExecutionError as error:
        print(f"a notebook failed; its executed copy in {args.out} shows where:\n{str(error)[-2000:]}")
        return 1
    return 0


def colab_links_command(args: argparse.Namespace) -> int:
    """``python -m helpers colab-links OWNER/NAME``: rewrite badges and setup cells; exit code 2 on a bad name.

    Imports ``helpers.colab`` only (no torch), so a fork can be pointed at itself before anything heavy is installed.
    """
    from ..colab import LOCAL_ROOT, rewrite_colab_links

    try:
        written = rewrite_colab_links(args.repo, args.branch, args.clone_url)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(written)} files now point to {args.repo} ({args.branch}): " + ", ".join(str(p.relative_to(LOCAL_ROOT)) for p in written))
    print("commit and push them; the badges then open your fork in Colab")
    return 0
