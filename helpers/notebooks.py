"""The numbered notebook series: executing it (``python -m helpers notebooks``) and settling its parameters.

Notebooks are committed without outputs. ``run_notebooks`` executes them in order (01 -> 05, so later
notebooks find the checkpoints earlier ones wrote) with nbclient, injecting parameters the way
papermill does, without needing papermill: a cell tagged ``injected-parameters`` placed right after the
cell tagged ``parameters`` overrides its values. ``quick_mode`` is what every notebook's parameter
cell resolves ``QUICK = "auto"`` with. ``rewrite_colab_links`` (``python -m helpers colab-links``)
points every badge and setup cell at a repository.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import nbformat
import torch
from tqdm.auto import tqdm

from . import colab
from .colab import default_checkpoint_dir
from .data import Pair, pairs_for, resolve_source
from .io import atomic_path, read_image

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = (
    "01_data_preparation.ipynb",
    "02_dncnn_denoising.ipynb",
    "03_unet_deblurring.ipynb",
    "04_edsr_super_resolution.ipynb",
    "05_pipeline_evaluation.ipynb",
)
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
CELL_TIMEOUT_S = 600
KERNEL_ENV = {"MPLBACKEND": "Agg"}  # never a GUI backend while executing (the setup cell's %matplotlib inline draws PNGs)


def colab_url(notebook: str, repo: str = colab.REPO, branch: str = colab.BRANCH) -> str:
    """The "Open in Colab" link of a notebook of GitHub repository ``repo`` ("OWNER/NAME") at ``branch``."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}"


def _full_run_checkpoint(checkpoint_dir: str | os.PathLike | None, model: str | None) -> Path | None:
    """The ``last.pt`` of a full run (of ``model``, or of any network) in the full-run checkpoint folder, if any."""
    root = checkpoint_root(checkpoint_dir, quick=False)
    candidates = [root / model / "last.pt"] if model else sorted(root.glob("*/last.pt"))
    return next((path for path in candidates if path.is_file()), None)


def quick_mode(quick: bool | str, data: str, checkpoint_dir: str | os.PathLike | None = None, model: str | None = None) -> bool:
    """Resolve a notebook's ``QUICK`` parameter: True/False as given; "auto" is quick without CUDA or without ``data``.

    "Without data" means a ``kind:PATH`` source whose PATH does not exist ("sample" always exists,
    and is what quick mode uses anyway). The reason is printed, so a typo in DATA is not silent.
    Missing data never falls back to quick mode while a full run of ``model`` (None: of any network)
    has a checkpoint in ``checkpoint_dir`` (None: Drive in Colab): a new VM after a disconnect has an
    empty local disk, and that run must continue, not be shadowed by a toy one. FileNotFoundError
    then says so and points to notebook 01.
    """
    if isinstance(quick, bool):
        return quick
    if quick != "auto":
        raise ValueError(f"QUICK must be True, False or 'auto', got {quick!r}")
    argument = data.partition(":")[2]
    paths = [Path(p) for p in argument.split(",")] if argument else []
    missing = [str(p) for p in paths if not p.exists()]
    if not torch.cuda.is_available():
        print("QUICK='auto' -> quick mode: no CUDA GPU (sample data, tiny models, a few steps)")
        return True
    if missing:
        waiting = _full_run_checkpoint(checkpoint_dir, model)
        if waiting is not None:
            raise FileNotFoundError(
                f"DATA={data!r} is not on this VM ({missing[0]}), and the full run in {waiting.parent} waits for it: "
                "run notebook 01 first (with the archives kept on Drive it only copies and extracts them), then this one"
            )
        print(f"QUICK='auto' -> quick mode: DATA={data!r} not found ({missing[0]}); run 01_data_preparation first")
        return True
    print(f"QUICK='auto' -> full run: CUDA GPU and DATA={data!r}")
    return False


def checkpoint_root(checkpoint_dir: str | os.PathLike | None, quick: bool) -> Path:
    """Where the training notebooks keep checkpoints: ``checkpoint_dir`` if given; in quick mode
    ``outputs/checkpoints-quick`` of this checkout (never Drive, never mixed with real runs); else
    ``helpers.colab.default_checkpoint_dir()`` (Drive in Colab)."""
    if checkpoint_dir is not None:
        return Path(checkpoint_dir)
    return REPO_ROOT / "outputs" / "checkpoints-quick" if quick else default_checkpoint_dir()


def extra_training_pairs(spec: str | None, name: str = "RealBlur-J") -> list[Pair]:
    """Every training pair of an optional extra source (it is never validated on, so no scene is held out).

    An absent source (``spec`` None, or its files missing) is not an error: one line says it is
    skipped and the result is empty, so training goes on with the main data alone.
    """
    if not spec:
        return []
    try:
        return pairs_for(spec, "train", val_fraction=0.0)
    except (FileNotFoundError, ValueError) as error:
        print(f"{name} skipped, training goes on without it (optional extra data): {str(error).splitlines()[0]}")
        return []


ARCHIVE_NAMES = {"gopro": "GOPRO_Large.zip", "realblur": "RealBlur.tar.gz"}  # as data_download.sh names them


def download_dataset(
    name: str, dest: str | os.PathLike, archive_dir: str | os.PathLike | None = None, keep: bool = True,
    required: bool = True,
) -> bool:
    """Run ``data_download.sh NAME --dest DEST [--archive-dir DIR]``, its output shown as it comes; True when installed.

    An archive already in ``archive_dir`` (Drive) is copied and extracted instead of downloaded; with
    ``keep``, a downloaded one is kept there for the next VM. A failure raises RuntimeError when
    ``required``, else prints one line and returns False.
    """
    command = ["bash", str(REPO_ROOT / "data_download.sh"), name, "--dest", str(dest)]
    if archive_dir and (keep or (Path(archive_dir) / ARCHIVE_NAMES[name]).is_file()):
        command += ["--archive-dir", str(archive_dir)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read1(4096):  # as it comes: curl's progress bar redraws with \r
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
    if process.returncode == 0:
        return True
    message = f"{name} was not installed (data_download.sh exit code {process.returncode}; its messages above say why)"
    if required:
        raise RuntimeError(message)
    print(f"{message}: going on without it")
    return False


def dataset_statistics(sources: Mapping[str, str], extra: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per (source, split): pairs, sequences and the frame sizes found (the first sharp frame of each sequence).

    ``sources`` maps display names to data specs ("sample", "gopro:PATH", ...; see ``helpers.data.resolve_source``),
    shown as train / val / test. ``extra`` sources (RealBlur-J) are training data only: all their
    training scenes (``extra_training_pairs``) and their test split.
    """
    rows = []
    splits = [(name, spec, split, 0.2) for name, spec in sources.items() for split in ("train", "val", "test")]
    splits += [(name, spec, split, 0.0) for name, spec in (extra or {}).items() for split in ("train", "test")]
    for name, spec, split, val_fraction in splits:
        pairs = resolve_source(spec).pairs(split, val_fraction)
        first_frames: dict[str, Path] = {}
        for pair in pairs:
            first_frames.setdefault(pair.sequence, pair.sharp)
        sizes = Counter(f"{image.shape[1]}x{image.shape[0]}" for image in map(read_image, first_frames.values()))
        rows.append({
            "dataset": name, "split": split, "pairs": len(pairs), "sequences": len(first_frames),
            "frame sizes": ", ".join(f"{size} ({count})" for size, count in sizes.most_common()) or "-",
        })
    return rows


def before_and_after(restored: Sequence[tuple[Path, Path]]) -> dict[str, dict[str, Any]]:
    """{file name: {"input": image, "restored": image}} of the restored images (videos left out), for ``viz.interactive_compare``."""
    return {
        source.name: {"input": read_image(source), "restored": read_image(destination)}
        for source, destination in restored
        if destination.suffix.lower() != ".mp4"
    }


def inject_parameters(notebook: nbformat.NotebookNode, parameters: Mapping[str, Any]) -> nbformat.NotebookNode:
    """Put ``NAME = value`` lines in a cell tagged ``injected-parameters`` right after the ``parameters`` cell.

    An earlier injected cell is replaced. Values must be Python literals (their ``repr`` is the code).
    Raises ValueError when the notebook has no cell tagged ``parameters``.
    """
    cells = [cell for cell in notebook.cells if INJECTED_TAG not in cell.get("metadata", {}).get("tags", [])]
    positions = [i for i, cell in enumerate(cells) if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])]
    if not positions:
        raise ValueError(f"{notebook.metadata.get('name', 'notebook')}: no cell tagged {PARAMETERS_TAG!r}")
    source = "# Injected parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cells.insert(positions[0] + 1, injected)
    notebook.cells = cells
    return notebook


def execute_notebook(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: int = CELL_TIMEOUT_S,
    cwd: str | os.PathLike | None = None,
) -> float:
    """Execute ``source`` top to bottom into ``destination`` (written atomically, also when a cell fails).

    The kernel runs in ``cwd`` (default: the notebook's own folder, as Jupyter would; Colab starts
    it in /content) with ``KERNEL_ENV`` and ``env`` added to this process's environment. Returns the
    seconds taken; a failing cell raises
    ``nbclient.exceptions.CellExecutionError`` naming the cell, after the partly executed copy is saved.
    """
    from nbclient import NotebookClient  # imported here: only this command needs Jupyter

    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: notebook not found")
    notebook = nbformat.read(source, as_version=4)
    if parameters:
        inject_parameters(notebook, parameters)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd or source.parent)}}
    )
    started = time.perf_counter()
    try:
        client.execute(env={**os.environ, **KERNEL_ENV, **(env or {})})
    finally:
        with atomic_path(destination) as temp:
            nbformat.write(notebook, temp)
    return time.perf_counter() - started


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: where the executed copy is and how long it took."""

    name: str
    path: Path
    seconds: float


def quick_parameters(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Parameters of a quick run: sample data, tiny settings, checkpoints inside ``out_dir`` (not Drive)."""
    return {"QUICK": True, "DATA": "sample", "CHECKPOINT_DIR": str(Path(out_dir).resolve() / "checkpoints")}


def run_notebooks(
    out_dir: str | os.PathLike,
    quick: bool = True,
    names: Sequence[str] = NOTEBOOKS,
    parameters: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[NotebookRun]:
    """Execute notebooks in order into ``out_dir``; stop at the first failing one (its error propagates).

    ``quick`` injects ``quick_parameters(out_dir)``; ``parameters`` are injected on top of them.
    """
    out_dir = Path(out_dir)
    unknown = [name for name in names if name not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; choose from {', '.join(NOTEBOOKS)}")
    injected = {**(quick_parameters(out_dir) if quick else {}), **(parameters or {})}
    runs = []
    for name in tqdm(names, desc="notebooks", unit="notebook"):
        seconds = execute_notebook(NOTEBOOK_DIR / name, out_dir / name, injected, env)
        runs.append(NotebookRun(name, out_dir / name, seconds))
        print(f"{name}: executed in {seconds:.0f} s -> {out_dir / name}")
    return runs


# An "Open in Colab" link, in a notebook's first cell or the README: its owner/name/branch part is rewritten.
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^\s)]+?/notebooks/")
REPO_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
BRANCH_NAME = re.compile(r"^[A-Za-z0-9_./-]+$")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        Path(temp).write_text(text)


def rewrite_colab_links(repo: str, branch: str = "main", clone_url: str | None = None, root: str | os.PathLike = REPO_ROOT) -> list[Path]:
    """Point the checkout at ``root`` to GitHub repository ``repo`` ("OWNER/NAME") at ``branch``; returns the files written.

    Rewrites the one place the address lives (``REPO``, ``BRANCH``, ``REPO_URL`` in helpers/colab.py),
    then from it every notebook's badge and setup cell (``colab.setup_cell``) and the README's
    badges. ``clone_url`` is what the setup cells clone (default: ``https://github.com/OWNER/NAME``;
    a mirror, or a local bare repository in the tests); badges always open GitHub, as Colab does.
    """
    if not REPO_NAME.match(repo):
        raise ValueError(f"repository must be OWNER/NAME (as in github.com/OWNER/NAME), got {repo!r}")
    if not BRANCH_NAME.match(branch):
        raise ValueError(f"not a branch name: {branch!r}")
    clone_url = clone_url or f"https://github.com/{repo}"
    if '"' in clone_url or "\\" in clone_url:
        raise ValueError(f"clone URL must not contain quotes or backslashes: {clone_url!r}")
    root = Path(root)
    constants = root / "helpers" / "colab.py"
    text = constants.read_text()
    for name, value in (("REPO", repo), ("BRANCH", branch), ("REPO_URL", clone_url)):
        text, count = re.subn(rf'^{name} = ".*"$', f'{name} = "{value}"', text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"{constants}: no line '{name} = \"...\"' to rewrite")
    _write_text(constants, text)
    link = f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/"
    written = [constants]
    for name in NOTEBOOKS:
        path = root / "notebooks" / name
        notebook = nbformat.read(path, as_version=4)
        notebook.cells[0].source = COLAB_LINK.sub(link, notebook.cells[0].source)
        next(cell for cell in notebook.cells if cell.cell_type == "code").source = colab.setup_cell(clone_url, branch)
        with atomic_path(path) as temp:
            nbformat.write(notebook, temp)
        written.append(path)
    readme = root / "README.md"
    _write_text(readme, COLAB_LINK.sub(link, readme.read_text()))
    return written + [readme]


def colab_links_command(args: argparse.Namespace) -> int:
    """``python -m helpers colab-links OWNER/NAME``: rewrite badges and setup cells; exit code 2 on a bad name."""
    try:
        written = rewrite_colab_links(args.repo, args.branch, args.clone_url)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(written)} files now point to {args.repo} ({args.branch}): " + ", ".join(str(p.relative_to(REPO_ROOT)) for p in written))
    print("commit and push them; the badges then open your fork in Colab")
    return 0


def notebooks_command(args: argparse.Namespace) -> int:
    """``python -m helpers notebooks``: execute the series into ``args.out``; exit code 1 if a notebook fails."""
    from nbclient.exceptions import CellExecutionError

    names = [name for name in NOTEBOOKS if not args.only or any(name.startswith(prefix) for prefix in args.only)]
    try:
        run_notebooks(args.out, quick=not args.full, names=names)
    except CellExecutionError as error:
        print(f"a notebook failed; its executed copy in {args.out} shows where:\n{str(error)[-2000:]}")
        return 1
    return 0
