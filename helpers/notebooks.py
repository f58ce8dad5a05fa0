"""The numbered notebook series: its data on each Colab VM, its run folders, and executing it (``python -m helpers notebooks``).

Colab gives every notebook its own VM, whose local disk starts empty; Drive is what they share. Notebook 01
downloads the datasets (``download_data``) and keeps their verified archives on Drive; every notebook then
starts with the same call, ``prepare_data``: the data already on this VM, or copied and extracted from its
archive on Drive, or one message saying to run 01 once. ``quick_mode`` resolves each notebook's ``QUICK``
parameter (on a Colab runtime without a GPU it stops with the menu path instead of falling back to a toy
run). ``run_folder`` names a run's checkpoint folder after what its data changes, so a changed run never
meets an old checkpoint; ``trained_weights`` finds each network's newest run for notebook 05.

Notebooks are committed without outputs. ``run_notebooks`` executes them in order (01 -> 05, so later
notebooks find the checkpoints earlier ones wrote) with nbclient, injecting parameters the way papermill
does, without needing papermill: a cell tagged ``injected-parameters`` placed right after the cell tagged
``parameters`` overrides its values. The "Open in Colab" links are ``helpers.colab``'s (``colab-links``).
"""

from __future__ import annotations

import os
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
from .cache import default_cache_dir
from .colab import default_checkpoint_dir
from .data import build_dataset, pairs_for, resolve_source
from .io import read_image
from .safe_writes import atomic_path
from .pipeline import DEFAULT_WEIGHTS_DIR, NETWORK_STAGES
from .recipes import PHOTOS_PREFIX

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


def _runs(root: str | os.PathLike, stage: str, file_name: str) -> list[Path]:
    """``file_name`` in every run folder of ``stage`` under ``root`` (``run_folder``'s names: "unet", "unet+realblur")."""
    return [path for path in Path(root).glob(f"{stage}*/{file_name}")
            if path.parent.name == stage or path.parent.name.startswith(f"{stage}+")]


def run_folder(root: str | os.PathLike, stage: str, config: Mapping[str, Any]) -> Path:
    """Where a notebook's run of ``stage`` keeps its checkpoints: ``root/<stage>``, or ``root/<stage>+<kind>`` for a run
    with an extra data source (``root/unet+realblur``).

    A run with RealBlur-J and one without are different runs (the trainer refuses to resume one as the
    other), so their folders differ: setting ``REALBLUR = None`` after a run with it starts a new run
    beside it instead of meeting its checkpoint, and setting it back resumes the first.
    """
    extra = (config.get("data") or {}).get("extra")
    return Path(root) / (f"{stage}+{extra.partition(':')[0]}" if extra else stage)


def trained_weights(root: str | os.PathLike) -> dict[str, Path]:
    """{network: the ``best.pt`` of its most recently written run under ``root``, else its bundled weights}, for 05."""
    chosen = {}
    for stage in NETWORK_STAGES:
        runs = _runs(root, stage, "best.pt")
        chosen[stage] = max(runs, key=lambda path: path.stat().st_mtime) if runs else DEFAULT_WEIGHTS_DIR / f"{stage}.pt"
    return chosen


def _full_run_checkpoint(checkpoint_dir: str | os.PathLike | None, model: str | None) -> Path | None:
    """The ``last.pt`` of a full run (of ``model``, or of any network) in the full-run checkpoint folder, if any."""
    root = checkpoint_root(checkpoint_dir, quick=False)
    candidates = _runs(root, model, "last.pt") if model else sorted(root.glob("*/last.pt"))
    return next(iter(candidates), None)


def quick_mode(
    quick: bool | str, data: str, checkpoint_dir: str | os.PathLike | None = None, model: str | None = None, gpu: bool = True
) -> bool:
    """Resolve a notebook's ``QUICK`` parameter: True/False as given; "auto" decides, printing why.

    In Colab, "auto" is the full run; a notebook that trains (``gpu``) stops there with ``colab.NoGpuError``
    on a runtime without a GPU (the menu path to get one, and the free tier's quota), so quick mode in Colab
    is only what ``QUICK = True`` asks for, and the data is ``prepare_data``'s business (it comes from Drive).
    Elsewhere "auto" is quick without CUDA or without ``data`` ("without data": a ``kind:PATH`` source whose
    PATH does not exist), except while a full run of ``model`` (None: of any network) has a checkpoint in
    ``checkpoint_dir``: that run must continue, so FileNotFoundError points to notebook 01 instead.
    """
    if isinstance(quick, bool):
        return quick
    if quick != "auto":
        raise ValueError(f"QUICK must be True, False or 'auto', got {quick!r}")
    if colab.in_colab():
        if gpu and not torch.cuda.is_available():
            raise colab.NoGpuError(colab.NO_GPU)
        print("QUICK='auto' -> full run" + (" on this Colab GPU" if gpu else " (this notebook needs no GPU)"))
        return False
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
                f"DATA={data!r} is not here ({missing[0]}), and the full run in {waiting.parent} waits for it: "
                "run notebook 01 first (it downloads the data there), then this one"
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


# The datasets data_download.sh installs: source kind -> (the folder it installs, the archive it keeps on Drive).
DOWNLOADED = {"gopro": ("GOPRO_Large", "GOPRO_Large.zip"), "realblur": ("RealBlur", "RealBlur.tar.gz")}


class DataNotReady(FileNotFoundError):
    """A notebook's dataset is neither on this VM nor on Drive; the message says what to do."""


def _installed_at(spec: str) -> tuple[str, Path]:
    """'gopro:/content/datasets/GOPRO_Large' -> ('gopro', /content/datasets): what data_download.sh installs, and where.

    Raises ValueError for a source data_download.sh does not install, or a folder named otherwise than it names it.
    """
    kind, _, argument = spec.partition(":")
    if kind not in DOWNLOADED:
        raise ValueError(f"{spec!r}: data_download.sh installs {' and '.join(DOWNLOADED)} sources only")
    path = Path(argument)
    if path.name != DOWNLOADED[kind][0]:
        raise ValueError(f"{spec!r}: data_download.sh installs {kind} as a folder named {DOWNLOADED[kind][0]}; end the path with it")
    return kind, path.parent


def download_dataset(name: str, dest: str | os.PathLike, archive_dir: str | os.PathLike | None = None, required: bool = True) -> bool:
    """Run ``data_download.sh NAME --dest DEST [--archive-dir DIR]``, its output shown as it comes; True when installed.

    With ``archive_dir`` (Drive), an archive kept there is copied and extracted instead of downloaded, and a
    downloaded one is kept there for the next VM. A failure raises RuntimeError when ``required``, else
    prints one line and returns False.
    """
    command = ["bash", str(REPO_ROOT / "data_download.sh"), name, "--dest", str(dest)]
    if archive_dir:
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


def download_data(data: str, realblur: str | None = None) -> str | None:
    """Notebook 01: install GOPRO (``data``) and, when asked for, RealBlur-J (``realblur``) on this VM, keeping each
    verified archive on Drive (in Colab) for every other notebook's VM (``prepare_data``).

    GOPRO must succeed (RuntimeError). RealBlur is optional: when it fails, one line says so and the result
    is None, so the series goes on with GOPRO alone. Returns ``realblur`` when it was installed.
    """
    archives = colab.drive_folder("datasets")  # Colab: Drive, mounted now; elsewhere None (nothing kept)
    download_dataset("gopro", _installed_at(data)[1], archives)
    installed = bool(realblur) and download_dataset("realblur", _installed_at(realblur)[1], archives, required=False)
    for kind, spec in (("gopro", data), ("realblur", realblur if installed else None)):
        if spec and archives is not None and not (archives / DOWNLOADED[kind][1]).is_file():
            print(f"warning: {DOWNLOADED[kind][1]} is not on Drive ({archives}; full?): the other notebooks cannot "
                  f"prepare {DOWNLOADED[kind][0]} on their VMs. Free some space on Drive and run this cell again.")
    return realblur if installed else None


def _missing(kind: str, path: Path, archive: Path | None) -> DataNotReady:
    """The message of a dataset that is neither here nor on Drive, in the notebook's own terms."""
    folder, archive_name = DOWNLOADED[kind]
    where = f"neither on this VM ({path}) nor on Drive ({archive})" if archive else f"not at {path}"
    if kind == "realblur":
        return DataNotReady(
            f"REALBLUR: RealBlur-J is {where}. Run notebook 01 once with REALBLUR set (it keeps {archive_name} on Drive, "
            "12.2 GB), or set REALBLUR = None to continue without it; that changes the run, so it starts a new run folder."
        )
    return DataNotReady(
        f"DATA: {folder} is {where}. Run notebook 01 once: it downloads {folder} and keeps {archive_name} on Drive, "
        "from where every notebook's VM copies it (minutes, not a new download)."
    )


def _ensure_on_this_vm(spec: str) -> None:
    """Make a gopro: or realblur: source present on this VM: already here, or from its archive on Drive (DataNotReady
    when neither). Other sources (the sample set, your own folders) are left to the datasets that read them."""
    kind, _, argument = spec.partition(":")
    if kind not in DOWNLOADED or Path(argument).exists():
        return
    _, dest = _installed_at(spec)
    archives = colab.drive_folder("datasets")  # Colab: Drive, mounted now; elsewhere None
    archive = None if archives is None else archives / DOWNLOADED[kind][1]
    if archive is None or not archive.is_file():
        raise _missing(kind, Path(argument), archive)
    print(f"{DOWNLOADED[kind][0]} is not on this VM yet: copying and extracting {archive}")
    download_dataset(kind, dest, archives)


def build_frame_caches(data: str, realblur: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Decode every training and validation frame of ``data`` (and RealBlur-J's training frames) once into the frame
    cache the datasets read (default ``default_cache_dir() / "frames"``), so training does not wait for it; the folder."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "frames"
    if not data.startswith(PHOTOS_PREFIX):  # photos: sources are degraded on the fly, not cached as frames
        for split in ("train", "val"):
            pairs = pairs_for(data, split)
            for stage in ("unet", "edsr") if pairs else ():  # the views every stage reads: blurry and sharp, 1x and 2x
                build_dataset(stage, pairs, cache_dir=folder)
    if realblur:  # deblurring data only: the UNet's frames
        build_dataset("unet", pairs_for(realblur, "train", val_fraction=0.0), cache_dir=folder)
    print(f"frame caches in {folder}")
    return folder


def prepare_data(data: str, realblur: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Every notebook's first step: ``data`` (and RealBlur-J, when ``realblur`` asks for it) ready on this VM, frames cached.

    Colab gives each notebook its own VM, whose local disk starts empty. A dataset already on this VM is
    used; else its archive on Drive (kept there by notebook 01) is copied and extracted; else DataNotReady
    says to run 01 once, or, for RealBlur, to set ``REALBLUR = None``. GOPRO comes first, so a missing
    RealBlur never blocks it. Drive is mounted only when an archive is needed: never for the sample set, so
    never in quick mode. Returns the frame-cache folder (``build_frame_caches``).
    """
    for spec in (data, realblur):
        if spec:
            _ensure_on_this_vm(spec)
    return build_frame_caches(data, realblur, cache_dir)


def dataset_statistics(sources: Mapping[str, str], extra: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per (source, split): pairs, sequences and the frame sizes found (the first sharp frame of each sequence).

    ``sources`` maps display names to data specs ("sample", "gopro:PATH", ...; see ``helpers.data.resolve_source``),
    shown as train / val / test. ``extra`` sources (RealBlur-J) are training data only: all their
    training scenes and their test split.
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
