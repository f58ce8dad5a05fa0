"""Colab and Google Drive glue for the notebooks' first cell; elsewhere it only reports the local setup.

``setup`` makes a notebook runnable in Colab (clone, install the requirements without touching
Colab's torch, mount Drive) and on any local checkout (nothing installed, nothing mounted). The
training notebooks keep checkpoints in ``default_checkpoint_dir()``: on Drive in Colab, so a
disconnected runtime resumes where it stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["PROJECT", "REPO_URL", "SetupInfo", "in_colab", "mount_drive", "default_checkpoint_dir", "describe_device", "setup"]

PROJECT = "image-repair-and-restoration"
REPO_URL = f"https://github.com/your-org/{PROJECT}"  # placeholder owner, as in the README badges
DRIVE_MOUNTPOINT = Path("/content/drive")
COLAB_CHECKOUT = Path("/content") / PROJECT
LOCAL_ROOT = Path(__file__).resolve().parent.parent
# Preinstalled in Colab and built for its CUDA: pinned to the installed versions while installing the rest.
KEEP_INSTALLED = ("torch", "torchvision")

Runner = Callable[[Sequence[str]], object]


def _run(command: Sequence[str]) -> object:
    return subprocess.run(list(command), check=True)


@dataclass(frozen=True)
class SetupInfo:
    """What ``setup`` found: where the code is, whether this is Colab, Drive, checkpoints, the device."""

    root: Path
    colab: bool
    drive: Path | None
    checkpoint_dir: Path
    device: str


def in_colab() -> bool:
    """True inside a Google Colab runtime (the ``google.colab`` package is importable)."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def mount_drive(mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT) -> Path | None:
    """Mount Google Drive at ``mountpoint`` in Colab (asks for authorisation once); None elsewhere."""
    if not in_colab():
        return None
    from google.colab import drive

    mountpoint = Path(mountpoint)
    if not (mountpoint / "MyDrive").is_dir():
        drive.mount(str(mountpoint))
    return mountpoint


def default_checkpoint_dir(project: str = PROJECT, mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT) -> Path:
    """``MyDrive/<project>/checkpoints`` on Drive in Colab (mounted on demand), else ``outputs/checkpoints`` here."""
    drive = mount_drive(mountpoint)
    folder = drive / "MyDrive" / project / "checkpoints" if drive is not None else LOCAL_ROOT / "outputs" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def describe_device() -> str:
    """'<GPU name>, <memory> GiB' for the first CUDA GPU, else 'no GPU (CPU, N threads)'."""
    import torch

    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return f"{properties.name}, {properties.total_memory / 2**30:.1f} GiB"
    return f"no GPU (CPU, {torch.get_num_threads()} threads)"


def _install_requirements(root: Path, run: Runner) -> None:
    """``pip install -r requirements.txt`` with the installed torch/torchvision pinned by a constraints file.

    The requirements hold ranges only, which Colab's versions satisfy; the constraints make sure pip
    never swaps Colab's CUDA build of torch for another one.
    """
    pins = []
    for name in KEEP_INSTALLED:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="constraints-", delete=False) as constraints:
        constraints.write("\n".join(pins) + "\n")
    try:
        run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(root / "requirements.txt"), "-c", constraints.name])
    finally:
        os.unlink(constraints.name)


def setup(
    root: str | os.PathLike | None = None,
    repo_url: str = REPO_URL,
    *,
    install: bool = True,
    mount: bool = True,
    mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT,
    run: Runner = _run,
) -> SetupInfo:
    """Prepare a notebook: code importable, requirements installed and Drive mounted in Colab; print a summary.

    ``root`` is the checkout (default: ``/content/<project>`` in Colab, this checkout elsewhere). In
    Colab a missing checkout is cloned from ``repo_url``, the requirements are installed (``install``)
    and Drive is mounted (``mount``); elsewhere nothing is installed or mounted. ``run`` executes the
    shell commands (tests replace it).
    """
    colab = in_colab()
    root = Path(root) if root is not None else (COLAB_CHECKOUT if colab else LOCAL_ROOT)
    if colab and not (root / "helpers" / "__init__.py").is_file():
        run(["git", "clone", "--quiet", "--depth", "1", repo_url, str(root)])
    if not (root / "helpers" / "__init__.py").is_file():
        raise FileNotFoundError(f"{root}: not a checkout of {PROJECT} (no helpers/__init__.py)")
    if colab and install:
        _install_requirements(root, run)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    drive = mount_drive(mountpoint) if colab and mount else None
    checkpoints = default_checkpoint_dir(mountpoint=mountpoint) if drive is not None else LOCAL_ROOT / "outputs" / "checkpoints"
    info = SetupInfo(root=root, colab=colab, drive=drive, checkpoint_dir=checkpoints, device=describe_device())
    where = "Colab" if colab else "local checkout"
    print(f"{where}: {root}; device: {info.device}; default checkpoint folder: {checkpoints}" + (f"; Drive at {drive}" if drive else ""))
    return info
