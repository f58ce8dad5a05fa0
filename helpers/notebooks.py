"""The numbered notebook series: executing it (``python -m helpers notebooks``) and settling its parameters.

Notebooks are committed without outputs. ``run_notebooks`` executes them in order (01 -> 05, so later
notebooks find the checkpoints earlier ones wrote) with nbclient, injecting parameters the way
papermill does, without needing papermill: a cell tagged ``injected-parameters`` placed right after the
cell tagged ``parameters`` overrides its values. ``quick_mode`` is what every notebook's parameter
cell resolves ``QUICK = "auto"`` with.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import nbformat
import torch
from tqdm.auto import tqdm

from .colab import REPO_URL, default_checkpoint_dir
from .data import resolve_source
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


def colab_url(notebook: str, repo_url: str = REPO_URL) -> str:
    """The "Open in Colab" link of a notebook on the main branch of ``repo_url`` (``helpers.colab.REPO_URL``)."""
    return repo_url.replace("https://github.com/", "https://colab.research.google.com/github/", 1) + f"/blob/main/notebooks/{notebook}"


def quick_mode(quick: bool | str, data: str) -> bool:
    """Resolve a notebook's ``QUICK`` parameter: True/False as given; "auto" is quick without CUDA or without ``data``.

    "Without data" means a ``kind:PATH`` source whose PATH does not exist ("sample" always exists,
    and is what quick mode uses anyway). The reason is printed, so a typo in DATA is not silent.
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


def dataset_statistics(sources: Mapping[str, str], splits: Sequence[str] = ("train", "val", "test")) -> list[dict[str, Any]]:
    """One row per (source, split): pairs, sequences and the frame sizes found (the first sharp frame of each sequence).

    ``sources`` maps display names to data specs ("sample", "gopro:PATH", ...; see ``helpers.data.resolve_source``).
    """
    rows = []
    for name, spec in sources.items():
        source = resolve_source(spec)
        for split in splits:
            pairs = source.pairs(split)
            first_frames: dict[str, Path] = {}
            for pair in pairs:
                first_frames.setdefault(pair.sequence, pair.sharp)
            sizes = Counter(f"{image.shape[1]}x{image.shape[0]}" for image in map(read_image, first_frames.values()))
            rows.append({
                "dataset": name, "split": split, "pairs": len(pairs), "sequences": len(first_frames),
                "frame sizes": ", ".join(f"{size} ({count})" for size, count in sizes.most_common()) or "-",
            })
    return rows


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
) -> float:
    """Execute ``source`` top to bottom into ``destination`` (written atomically, also when a cell fails).

    The kernel runs in the notebook's own folder (as Jupyter would) with ``KERNEL_ENV`` and ``env``
    added to this process's environment. Returns the seconds taken; a failing cell raises
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
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
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
