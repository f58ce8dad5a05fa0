"""Colab and Google Drive glue for the notebooks; elsewhere it only reports the local setup.

The repository's address lives here (``REPO``, ``BRANCH``, ``REPO_URL``): ``rewrite_colab_links``
(``python -m helpers colab-links OWNER/NAME``) rewrites them, every notebook's setup cell (``setup_cell``) and
every "Open in Colab" badge from them, without importing torch. ``setup`` finishes the setup cell's work in
Colab (requirements installed without touching Colab's torch, the widget manager ipywidgets 8 needs) and
reports the device; ``NO_GPU`` is what a notebook says on a Colab runtime without one. Drive is mounted only
when something is kept there (``mount_drive``), never in quick mode; ``flush_drive`` makes sure the last
checkpoint has reached Drive before the runtime goes away.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

import nbformat

__all__ = [
    "PROJECT", "REPO", "BRANCH", "REPO_URL", "CONTENT", "NO_GPU", "NoGpuError", "SetupInfo", "in_colab", "has_gpu",
    "mount_drive", "flush_drive", "drive_folder", "default_checkpoint_dir", "describe_device", "setup_cell", "setup",
    "colab_url", "rewrite_colab_links", "FilePicker", "offer_download",
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


def mount_drive(mountpoint: str | os.PathLike | None = None) -> Path | None:
    """Mount Google Drive at ``mountpoint`` (default ``DRIVE_MOUNTPOINT``) in Colab (asks for authorisation once); None elsewhere."""
    if not in_colab():
        return None
    from google.colab import drive

    mountpoint = Path(mountpoint or DRIVE_MOUNTPOINT)
    if not (mountpoint / "MyDrive").is_dir():
        drive.mount(str(mountpoint))
    return mountpoint


def flush_drive(mountpoint: str | os.PathLike | None = None) -> None:
    """Write everything still cached to Drive and unmount it (``drive.flush_and_unmount``), saying so.

    Files written to the Drive mount reach Drive in the background: a runtime that dies right after
    training can lose the last checkpoint. Nothing happens outside Colab or when Drive is not mounted.
    """
    mountpoint = Path(mountpoint or DRIVE_MOUNTPOINT)
    if not in_colab() or not (mountpoint / "MyDrive").is_dir():
        return
    from google.colab import drive

    drive.flush_and_unmount()
    print(f"Drive flushed and unmounted from {mountpoint}: every checkpoint is on Drive")


def drive_folder(*parts: str, mountpoint: str | os.PathLike | None = None) -> Path | None:
    """``MyDrive/<project>/<parts>`` on Drive in Colab (mounted on demand, created); None elsewhere."""
    drive = mount_drive(mountpoint)
    if drive is None:
        return None
    folder = drive.joinpath("MyDrive", PROJECT, *parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_checkpoint_dir(mountpoint: str | os.PathLike | None = None) -> Path:
    """``MyDrive/<project>/checkpoints`` on Drive in Colab (mounted on demand), else ``outputs/checkpoints`` here."""
    folder = drive_folder("checkpoints", mountpoint=mountpoint) or LOCAL_ROOT / "outputs" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


NO_GPU = (
    "This Colab runtime has no GPU, and the full run would take days on its CPU: choose one in the menu "
    "Runtime → Change runtime type → T4 GPU → Save, then run the notebook again from the top (the new runtime "
    "keeps nothing of this one; the data comes back from Drive). Colab gives a CPU runtime when the free tier's GPU "
    "quota is used up (it refills after some hours, up to a day): meanwhile QUICK = True tries the notebook on the "
    "CPU (tiny networks on a small sample set, about a minute, nothing written to Drive)."
)


class NoGpuError(RuntimeError):
    """A notebook's full run was asked for on a Colab runtime without a GPU (the message is ``NO_GPU``)."""


def has_gpu() -> bool:
    """Whether torch sees a CUDA GPU (torch is imported only now: ``colab-links`` runs without it)."""
    import torch

    return torch.cuda.is_available()


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
    if colab and not has_gpu():
        print("No GPU on this Colab runtime: the notebook stops after its parameters unless QUICK = True "
              "(Runtime → Change runtime type → T4 GPU gives you one)")
    return info


def colab_url(notebook: str, repo: str = REPO, branch: str = BRANCH) -> str:
    """The "Open in Colab" link of a notebook of GitHub repository ``repo`` ("OWNER/NAME") at ``branch``."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{notebook}"


# An "Open in Colab" link, in a notebook's first cell or the README: its owner/name/branch part is rewritten.
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^\s)]+?/notebooks/")
# GitHub's rules: an owner is letters, digits and single inner hyphens (39 at most); a name is letters, digits, "_", "."
# and "-" (100 at most, not "." or ".."). A clone URL is one Git reads: scheme://... or scp-like user@host:path.
GITHUB_OWNER = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
GITHUB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
CLONE_URL = re.compile(r"(?:https?|ssh|git|file)://[^\s\"'\\\x00-\x1f\x7f]+|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^\s\"'\\\x00-\x1f\x7f]+")


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path`` (never half written; mode kept)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False) as temp:
        temp.write(text)
    os.chmod(temp.name, path.stat().st_mode & 0o777)
    os.replace(temp.name, path)


def _branch_problem(branch: str) -> str | None:
    """What ``git check-ref-format --branch`` would refuse in ``branch``, or None."""
    if not branch or branch == "@" or branch.startswith(("-", "/")) or branch.endswith(("/", ".")):
        return "empty, '@', or starting with '-' or '/' or ending with '/' or '.'"
    if any(ord(character) < 33 or character == "\x7f" or character in "~^:?*[\\" for character in branch):
        return "a space, control character or one of ~ ^ : ? * [ \\"
    if ".." in branch or "@{" in branch or "//" in branch:
        return "'..', '@{' or '//'"
    if any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")):
        return "a component starting with '.' or ending with '.lock'"
    return None


def rewrite_colab_links(repo: str, branch: str = "main", clone_url: str | None = None, root: str | os.PathLike = LOCAL_ROOT) -> list[Path]:
    """Point the checkout at ``root`` to GitHub repository ``repo`` ("OWNER/NAME") at ``branch``; returns the files written.

    Rewrites the one place the address lives (``REPO``, ``BRANCH``, ``REPO_URL`` in helpers/colab.py),
    then from it every notebook's badge and setup cell (``setup_cell``) and the README's badges.
    ``clone_url`` is what the setup cells clone (default: ``https://github.com/OWNER/NAME``; a mirror, or a
    local bare repository in the tests); badges always open GitHub, as Colab does. Needs nbformat, not torch:
    a fork is pointed at itself before anything heavy is installed. Raises ValueError for a bad name.
    """
    owner, _, name = repo.partition("/")
    if not (GITHUB_OWNER.fullmatch(owner) and GITHUB_NAME.fullmatch(name) and name not in (".", "..")):
        raise ValueError(f"repository must be OWNER/NAME as GitHub allows them (as in github.com/OWNER/NAME), got {repo!r}")
    if problem := _branch_problem(branch):
        raise ValueError(f"not a branch name Git accepts ({problem}): {branch!r}")
    clone_url = clone_url or f"https://github.com/{repo}"
    if not CLONE_URL.fullmatch(clone_url):
        raise ValueError(f"not a clone URL (scheme://... or user@host:path, no spaces, quotes or control characters): {clone_url!r}")
    root = Path(root)
    constants = root / "helpers" / "colab.py"
    text = constants.read_text()
    for name, value in (("REPO", repo), ("BRANCH", branch), ("REPO_URL", clone_url)):
        text, count = re.subn(rf'^{name} = ".*"$', f'{name} = "{value}"', text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f"{constants}: no line '{name} = \"...\"' to rewrite")
    _replace_text(constants, text)
    link = f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/"
    written = [constants]
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        notebook.cells[0].source = COLAB_LINK.sub(link, notebook.cells[0].source)
        next(cell for cell in notebook.cells if cell.cell_type == "code").source = setup_cell(clone_url, branch)
        text = nbformat.writes(notebook)
        _replace_text(path, text if text.endswith("\n") else text + "\n")  # as nbformat.write ends a file
        written.append(path)
    readme = root / "README.md"
    _replace_text(readme, COLAB_LINK.sub(link, readme.read_text()))
    return written + [readme]


class FilePicker:
    """The user's own files, uploaded into ``folder``: Colab's upload dialog, or an upload button elsewhere.

    In Colab the browser's file dialog opens at once (``google.colab.files.upload``) and the files are
    saved before the cell ends. Elsewhere displaying the picker shows an ipywidgets ``FileUpload``
    button; ``paths()`` saves what was picked in it (run it in a later cell).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []
        self.widget = None
        if in_colab():
            self.saved = self._upload_in_colab()
        else:
            import ipywidgets

            self.widget = ipywidgets.FileUpload(multiple=True, description="pictures, videos")

    def _upload_in_colab(self) -> list[Path]:
        """Colab's dialog. ``files.upload`` writes each file into the current folder itself, a taken name becoming
        "name (1).ext", and returns the names as picked: so it runs in ``folder``, and the uploads are the files
        that appeared there (a second upload of "a.jpg" is "a (1).jpg", not the first one again)."""
        from google.colab import files

        before = set(self.folder.iterdir())
        previous = Path.cwd()
        os.chdir(self.folder)
        try:
            files.upload()
        finally:
            os.chdir(previous)
        return sorted(set(self.folder.iterdir()) - before)

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
