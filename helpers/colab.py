"""Colab and Google Drive glue for the notebooks; elsewhere it only reports the local setup.

The repository's address lives here (``REPO``, ``BRANCH``, ``REPO_URL``): ``python -m helpers
colab-links OWNER/NAME`` rewrites them, every notebook's setup cell (``setup_cell``) and every
"Open in Colab" badge from them. ``setup`` finishes the setup cell's work in Colab (requirements
installed without touching Colab's torch, the widget manager ipywidgets 8 needs) and reports the
device. Drive is mounted only when something is kept there (``mount_drive``), never in quick mode;
``flush_drive`` makes sure the last checkpoint has reached Drive before the runtime goes away.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "PROJECT", "REPO", "BRANCH", "REPO_URL", "CONTENT", "SetupInfo", "in_colab", "mount_drive", "flush_drive",
    "drive_folder", "default_checkpoint_dir", "describe_device", "setup_cell", "setup", "FilePicker", "offer_download",
]

PROJECT = "image-repair-and-restoration"
# The repository the badges open and the setup cells clone: written by `python -m helpers colab-links`.
REPO = "your-org/image-repair-and-restoration"
BRANCH = "main"
REPO_URL = "https://github.com/your-org/image-repair-and-restoration"
# Colab's local working folder (the VM's disk). IMAGE_REPAIR_CONTENT moves it: the simulated Colab session of the tests.
CONTENT = Path(os.environ.get("IMAGE_REPAIR_CONTENT") or "/content")
DRIVE_MOUNTPOINT = CONTENT / "drive"
LOCAL_ROOT = Path(__file__).resolve().parent.parent
# Preinstalled in Colab and built for its CUDA: pinned to the installed versions while installing the rest.
KEEP_INSTALLED = ("torch", "torchvision")

Runner = Callable[[Sequence[str]], object]


def _run(command: Sequence[str]) -> object:
    return subprocess.run(list(command), check=True)


@dataclass(frozen=True)
class SetupInfo:
    """What ``setup`` found: where the code is, whether this is Colab, the device."""

    root: Path
    colab: bool
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


def flush_drive(mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT) -> None:
    """Write everything still cached to Drive and unmount it (``drive.flush_and_unmount``), saying so.

    Files written to the Drive mount reach Drive in the background: a runtime that dies right after
    training can lose the last checkpoint. Nothing happens outside Colab or when Drive is not mounted.
    """
    if not in_colab() or not (Path(mountpoint) / "MyDrive").is_dir():
        return
    from google.colab import drive

    drive.flush_and_unmount()
    print(f"Drive flushed and unmounted from {mountpoint}: every checkpoint is on Drive")


def drive_folder(*parts: str, mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT) -> Path | None:
    """``MyDrive/<project>/<parts>`` on Drive in Colab (mounted on demand, created); None elsewhere."""
    drive = mount_drive(mountpoint)
    if drive is None:
        return None
    folder = drive.joinpath("MyDrive", PROJECT, *parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_checkpoint_dir(mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT) -> Path:
    """``MyDrive/<project>/checkpoints`` on Drive in Colab (mounted on demand), else ``outputs/checkpoints`` here."""
    folder = drive_folder("checkpoints", mountpoint=mountpoint) or LOCAL_ROOT / "outputs" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def describe_device() -> str:
    """'<GPU name>, <memory> GiB' for the first CUDA GPU, else 'no GPU (CPU, N threads)'."""
    import torch

    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return f"{properties.name}, {properties.total_memory / 2**30:.1f} GiB"
    return f"no GPU (CPU, {torch.get_num_threads()} threads)"


_SETUP_CELL = """# Setup, the same in every notebook: find this repository (in Colab: clone it into /content, or update an
# earlier clone), install the requirements (keeping Colab's torch) and report the GPU. Opened from a fork?
# `python -m helpers colab-links OWNER/NAME` writes REPO_URL and BRANCH here (see the README).
import subprocess, sys
from pathlib import Path

REPO_URL, BRANCH = "{repo_url}", "{branch}"
REPO_ON_DRIVE = None  # or a copy of the repository on Drive, e.g. "/content/drive/MyDrive/{project}"
ROOT = next((path for path in [Path.cwd(), *Path.cwd().parents] if (path / "helpers" / "colab.py").is_file()), None)
if ROOT is None and REPO_ON_DRIVE:  # Colab, with the code kept on Drive: mount it and use that copy
    from google.colab import drive
    drive.mount("/content/drive")
    ROOT = Path(REPO_ON_DRIVE)
if ROOT is None:  # Colab: clone into this folder, or update the clone an earlier run of this cell made
    ROOT = Path.cwd() / Path(REPO_URL).name.removesuffix(".git")
    update = (ROOT / ".git").is_dir()
    git = ["git", "-C", str(ROOT), "pull", "--ff-only", "origin", BRANCH] if update else ["git", "clone", "--depth", "1", "--branch", BRANCH, REPO_URL, str(ROOT)]
    result = subprocess.run(git, capture_output=True, text=True)
    problem = (result.stderr.strip() or "no message").splitlines()[-1]
    if result.returncode and not update:
        raise SystemExit(f"could not clone {{REPO_URL}} (branch {{BRANCH}}): {{problem}}. Set REPO_URL and BRANCH above to your repository.")
    if result.returncode:
        print(f"could not update {{ROOT}} ({{problem}}); using it as it is")
sys.path.insert(0, str(ROOT))
from helpers import colab, notebooks

colab.setup(ROOT)
%matplotlib inline"""


def setup_cell(repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The source of every notebook's first code cell, cloning ``repo_url`` at ``branch``."""
    return _SETUP_CELL.format(repo_url=repo_url, branch=branch, project=PROJECT)


def _requirements_stamp(root: Path) -> Path:
    """A marker in this machine's temp folder: these requirements were installed on this VM already."""
    digest = hashlib.sha1((root / "requirements.txt").read_bytes()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"{PROJECT}-requirements-{digest}"


def _install_requirements(root: Path, run: Runner) -> None:
    """``pip install -r requirements.txt`` with the installed torch/torchvision pinned by a constraints file.

    The requirements hold ranges only, which Colab's versions satisfy; the constraints make sure pip
    never swaps Colab's CUDA build of torch for another one. Done once per VM (``_requirements_stamp``).
    """
    stamp = _requirements_stamp(root)
    if stamp.is_file():
        return
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
    stamp.write_text("installed\n")


def _enable_widget_manager() -> bool:
    """Colab renders ipywidgets 7 itself; 8.x needs its custom widget manager. True when it was enabled."""
    try:
        major = int(metadata.version("ipywidgets").split(".")[0])
    except metadata.PackageNotFoundError:
        return False
    if major < 8:
        return False
    from google.colab import output

    output.enable_custom_widget_manager()
    return True


def setup(root: str | os.PathLike | None = None, *, install: bool = True, run: Runner = _run) -> SetupInfo:
    """Finish a notebook's setup cell: in Colab the requirements (``install``) and the widget manager; print a summary.

    ``root`` is the checkout the setup cell found or cloned (default: this one). Nothing is mounted
    here: Drive is mounted when a notebook keeps something there (full runs only). ``run`` executes
    the shell commands (tests replace it).
    """
    colab = in_colab()
    root = Path(root) if root is not None else LOCAL_ROOT
    if not (root / "helpers" / "colab.py").is_file():
        raise FileNotFoundError(f"{root}: not a checkout of {PROJECT} (no helpers/colab.py)")
    if colab and install:
        _install_requirements(root, run)
    if colab:
        _enable_widget_manager()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    info = SetupInfo(root=root, colab=colab, device=describe_device())
    print(f"{'Colab' if colab else 'local checkout'}: {root}; device: {info.device}")
    return info


class FilePicker:
    """The user's own files, uploaded into ``folder``: Colab's upload dialog, or an upload button elsewhere.

    In Colab the browser's file dialog opens at once (``google.colab.files.upload``) and the files
    are saved before the cell ends. Elsewhere displaying the picker shows an ipywidgets
    ``FileUpload`` button; ``paths()`` saves what was picked in it (run it in a later cell).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []
        self.widget = None
        if in_colab():
            from google.colab import files

            self.saved = [self._save(name, content) for name, content in files.upload().items()]
        else:
            import ipywidgets

            self.widget = ipywidgets.FileUpload(multiple=True, description="pictures, videos")

    def _save(self, name: str, content: bytes) -> Path:
        path = self.folder / Path(name).name  # the base name only: never outside the folder
        path.write_bytes(bytes(content))
        return path

    def paths(self) -> list[Path]:
        """The saved files (widget uploads saved now: ipywidgets 7 gives a dict of dicts, 8 a tuple of dicts)."""
        if self.widget is not None:
            value = self.widget.value
            items = value.items() if isinstance(value, dict) else ((item["name"], item) for item in value)
            self.saved = [self._save(name, item["content"]) for name, item in items]
        return self.saved

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget if self.widget is not None else f"{len(self.saved)} files saved in {self.folder}")


def offer_download(folder: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Zip ``folder`` into ``archive`` (.zip, written atomically) and offer it: Colab's download, else a link."""
    archive = Path(archive)
    with tempfile.TemporaryDirectory(dir=archive.parent) as temp:
        made = shutil.make_archive(str(Path(temp) / archive.stem), "zip", root_dir=folder)
        os.replace(made, archive)
    if in_colab():
        from google.colab import files

        files.download(str(archive))
    else:
        from IPython.display import FileLink, display

        display(FileLink(os.path.relpath(archive)))
    return archive
