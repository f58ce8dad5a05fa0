"""A Colab course played on this machine as Colab really runs it: every notebook on its own VM, sharing only Drive.

- "GitHub" is a local bare repository of this working tree on branch ``colab``, which ``colab-links``
  points every setup cell at (the same REPO_URL mechanism a fork uses); each VM's setup cell clones it into
  an empty "/content" (``IMAGE_REPAIR_CONTENT``), with nothing of this checkout importable.
- Colab is the fake ``google.colab`` of tests/fake_colab (a runtime without a GPU: this machine's CPU);
  Drive is a temporary folder that outlives the VMs. Each VM is a fresh folder: its /content, data cache and
  temporary folder start empty.
- GOPRO is a tiny GOPRO_Large.zip served from one server on 127.0.0.1, RealBlur a tiny RealBlur.tar.gz from
  another. Only notebook 01 downloads; every other VM gets the data from the archives 01 kept on Drive.
- The course: 01 on VM 1; 02 on VM 2; 03 (with RealBlur) on VM 3, SIGKILLed as soon as its first epoch's
  checkpoint reached Drive, and resumed on VM 4 (RealBlur restored from Drive there), ending with the same
  weights as an uninterrupted run; 04 on VM 5; 05 on VM 6 with an upload. Each runs its real configuration
  (QUICK = False on the CPU: the full losses, worker processes, Drive), only the sizes are tiny (``TINY``).
- A CPU-only runtime with the default ``QUICK = "auto"`` stops in the cell after the parameters with the menu
  path to a GPU; ``QUICK = True`` runs quick mode there without mounting Drive.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest
import torch
import torchvision
from nbclient.exceptions import CellExecutionError, DeadKernelError

from conftest import make_gopro_tree
from helpers.checkpoint import load_checkpoint
from helpers.notebooks import execute_notebook
from test_data_download import FixtureServer, tgz_bytes, zip_bytes
from test_notebooks import NO_NETWORK, code_cells, stream_text

REPO = Path(__file__).resolve().parents[1]
FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"
NAME = "image-repair-and-restoration"
GOPRO = {"train": 3, "test": 1}  # sequences of 2 frames: 6 training pairs (2 of them validation), 2 test pairs
REALBLUR_J = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
REALBLUR = {"train": 3, "test": 1}  # scenes of 1 pair, portrait frames like RealBlur-J's
# Each notebook's real configuration, at tiny sizes (the parameters a user would set).
TINY = {
    "02": {"ARCH": {"depth": 3, "channels": 8}, "EPOCHS": 2, "BATCH_SIZE": 2, "PATCH": 32, "STEPS_PER_EPOCH": 2},
    "03": {"ARCH": {"base_channels": 8, "depth": 2}, "EPOCHS": 3, "BATCH_SIZE": 2, "PATCH": 32, "STEPS_PER_EPOCH": 4},
    "04": {"ARCH": {"scale": 2, "num_blocks": 1, "channels": 8, "res_scale": 1.0}, "EPOCHS": 2, "BATCH_SIZE": 2, "PATCH": 16,
           "STEPS_PER_EPOCH": 2},
    "05": {"LIMIT": 2, "EPOCHS": 1, "BATCH_SIZE": 2, "PATCH": 32, "STEPS_PER_EPOCH": 2},
}
PERCEPTUAL = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def publish_this_checkout(root: Path) -> Path:
    """This working tree (its files as they are now, committed or not, without the bundled weights: the course
    trains every network) as a bare repository on branch ``colab``, its setup cells pointing at it through
    ``colab-links``."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    untracked = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")
    source = root / "fork"
    for name in tracked + untracked:
        if name and (REPO / name).is_file() and not name.startswith("weights/"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    bare = root / f"{NAME}.git"
    command = [sys.executable, "-m", "helpers", "colab-links", f"someone/{NAME}", "--branch", "colab", "--clone-url", bare.as_uri()]
    subprocess.run(command, cwd=source, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(source)})
    git("init", "--quiet", "--initial-branch", "colab", cwd=source)
    git("add", "-A", cwd=source)
    git("commit", "--quiet", "-m", "fork", cwd=source)
    git("clone", "--quiet", "--bare", str(source), str(bare), cwd=root)
    return source


def realblur_archive(root: Path) -> bytes:
    """A tiny RealBlur.tar.gz: RealBlur-J scenes (gt and blur frames, portrait) and their train/test lists."""
    frames = make_gopro_tree(root / "realblur-frames", REALBLUR, frames=1, size=(36, 64))
    members, lists = {}, {}
    for split in REALBLUR:
        lines = []
        for number, sequence in enumerate(sorted((frames / split).iterdir())):
            scene = f"{REALBLUR_J}/{split}{number:03d}"
            for role, folder in (("gt", "sharp"), ("blur", "blur")):
                members[f"{scene}/{role}/{role}_1.png"] = (sequence / folder / "000000.png").read_bytes()
            lines.append(f"{scene}/gt/gt_1.png {scene}/blur/blur_1.png")
        lists[f"RealBlur_J_{split}_list.txt"] = ("\n".join(lines) + "\n").encode()
    return tgz_bytes({**members, **lists})


class World:
    """What outlives a VM: the repository, the two dataset servers, Drive; and the VMs' own folders."""

    def __init__(self, root: Path, gopro_server: FixtureServer, realblur_server: FixtureServer) -> None:
        self.root, self.gopro_server, self.realblur_server = root, gopro_server, realblur_server
        self.fork = publish_this_checkout(root)
        self.drive = root / "drive"
        self.project = self.drive / "MyDrive" / NAME
        self.log = root / "colab.log"
        self.torch_home = root / "torch_home"  # random MobileNetV3 weights where torchvision caches ImageNet's
        (self.torch_home / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(torchvision.models.mobilenet_v3_large().state_dict(), self.torch_home / "hub" / "checkpoints" / PERCEPTUAL)
        gopro = make_gopro_tree(root / "GOPRO_Large", GOPRO, frames=2, size=(128, 72))  # 05 calibrates on 64+ pixels
        gopro_server.files["/GOPRO_Large.zip"] = zip_bytes(
            {p.relative_to(gopro).as_posix(): p.read_bytes() for p in sorted(gopro.rglob("*.png"))}, "GOPRO_Large/")
        realblur_server.files["/RealBlur.tar.gz"] = realblur_archive(root)
        self.uploads = root / "picked on the laptop"
        self.seconds: dict[str, float] = {}

    def downloads(self) -> int:
        return len(self.gopro_server.requests) + len(self.realblur_server.requests)

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.is_file() else []

    def env(self, vm: Path, marker: str) -> dict[str, str]:
        for folder in ("content", "cache", "tmp"):
            (vm / folder).mkdir(parents=True, exist_ok=True)
        return {
            **NO_NETWORK, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PIP_NO_INDEX": "1",
            "PYTHONPATH": str(FAKE_COLAB),  # google.colab importable: a Colab runtime; nothing of this checkout
            "IMAGE_REPAIR_CONTENT": str(vm / "content"), "IMAGE_REPAIR_CACHE": str(vm / "cache"), "TMPDIR": str(vm / "tmp"),
            "FAKE_DRIVE": str(self.drive), "FAKE_COLAB_LOG": str(self.log), "FAKE_UPLOADS": str(self.uploads),
            "TORCH_HOME": str(self.torch_home),
            "GOPRO_URLS": self.gopro_server.url("/GOPRO_Large.zip"), "REALBLUR_URLS": self.realblur_server.url("/RealBlur.tar.gz"),
            "GOPRO_EXPECTED_TRAIN": str(2 * GOPRO["train"]), "GOPRO_EXPECTED_TEST": str(2 * GOPRO["test"]),
            "REALBLUR_EXPECTED_TRAIN": str(REALBLUR["train"]), "REALBLUR_EXPECTED_TEST": str(REALBLUR["test"]),
            "OMP_NUM_THREADS": "1", "SESSION_MARKER": marker,
        }

    def run(self, vm: Path, notebook: str, label: str, kill_when: Path | None = None, **parameters) -> nbformat.NotebookNode:
        """Execute a notebook of the fork in ``vm``'s /content with ``parameters`` (its data on that VM's local disk);
        with ``kill_when``, SIGKILL the VM's processes as soon as that file exists."""
        content = vm / "content"
        parameters = {"DATA": f"gopro:{content}/datasets/GOPRO_Large", **parameters}
        if "REALBLUR" in parameters:
            parameters["REALBLUR"] = f"realblur:{content}/datasets/RealBlur"
        marker, destination = uuid.uuid4().hex, self.root / "executed" / f"{label}.ipynb"
        outcome: dict = {}

        def execute() -> None:
            try:
                execute_notebook(self.fork / "notebooks" / notebook, destination, parameters, self.env(vm, marker), cwd=content)
            except Exception as error:  # reported to the test thread
                outcome["error"] = error

        started = time.perf_counter()
        worker = threading.Thread(target=execute)
        worker.start()
        while kill_when is not None and worker.is_alive() and not kill_when.exists():
            time.sleep(0.01)
        if kill_when is not None and kill_when.exists():
            kill_processes(marker)
        worker.join()
        self.seconds[label] = time.perf_counter() - started
        if kill_when is not None:
            assert isinstance(outcome.get("error"), DeadKernelError), f"{label}: the kernel was not killed mid-run: {outcome}"
        elif "error" in outcome:
            raise outcome["error"]
        return nbformat.read(destination, as_version=4)


def kill_processes(marker: str) -> None:
    """SIGKILL every process of one simulated VM (the kernel, its DataLoader workers), as a dying VM does."""
    for process in Path("/proc").iterdir():
        try:
            environ = (process / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if process.name.isdigit() and f"SESSION_MARKER={marker}".encode() in environ:
            try:
                os.kill(int(process.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    servers = FixtureServer(), FixtureServer()
    for server in servers:
        server.thread.start()
    yield World(tmp_path_factory.mktemp("colab_session"), *servers)
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.timeout(1800)  # eight notebook kernels: minutes on a loaded two-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the VM's processes through /proc")
def test_a_course_with_every_notebook_on_its_own_vm_and_a_disconnect(world: World) -> None:
    checkpoints = world.project / "checkpoints"
    vm = {number: world.root / f"vm{number}" for number in range(1, 7)}

    # VM 1: notebook 01 downloads both datasets and keeps their archives on Drive ("auto": no GPU needed for it).
    prepared = stream_text(world.run(vm[1], "01_data_preparation.ipynb", "VM1 01", REALBLUR=True))
    assert "QUICK='auto' -> full run (this notebook needs no GPU)" in prepared
    assert (world.project / "datasets" / "GOPRO_Large.zip").is_file() and (world.project / "datasets" / "RealBlur.tar.gz").is_file()
    assert (vm[1] / "content" / NAME / "helpers" / "colab.py").is_file()  # cloned from the bare repository
    assert world.log_lines()[-1] == "flush_and_unmount"  # 01 ends by flushing the archives to Drive
    downloads = world.downloads()
    assert len(world.gopro_server.requests) >= 1 and len(world.realblur_server.requests) >= 1

    # VM 2: notebook 02 on a fresh VM: GOPRO comes from Drive, not from the server.
    denoising = stream_text(world.run(vm[2], "02_dncnn_denoising.ipynb", "VM2 02", QUICK=False, **TINY["02"]))
    assert "copying and extracting" in denoising and "instead of downloading" in denoising
    assert (vm[2] / "content" / "datasets" / "GOPRO_Large" / ".complete").is_file()
    assert (checkpoints / "dncnn" / "best.pt").is_file()

    # VM 3: notebook 03 with RealBlur, killed once its first epoch's checkpoint reached Drive.
    unet_run = checkpoints / "unet+realblur"
    world.run(vm[3], "03_unet_deblurring.ipynb", "VM3 03 (killed)", kill_when=unet_run / "last.pt", QUICK=False, REALBLUR=True,
              **TINY["03"])
    interrupted = load_checkpoint(unet_run / "last.pt")
    assert 1 <= interrupted["epoch"] < TINY["03"]["EPOCHS"]  # killed mid-run, after the first epoch reached Drive

    # VM 4: a new VM after the disconnect: both datasets come back from Drive, and the run resumes from Drive.
    resumed = stream_text(world.run(vm[4], "03_unet_deblurring.ipynb", "VM4 03 (resumed)", QUICK=False, REALBLUR=True, **TINY["03"]))
    assert (vm[4] / "content" / "datasets" / "RealBlur" / ".complete").is_file()  # restored from Drive on this VM
    assert f"/drive/MyDrive/{NAME}/checkpoints/unet+realblur/last.pt after epoch {interrupted['epoch']}" in resumed
    world.run(vm[4], "03_unet_deblurring.ipynb", "VM4 03 (reference)", QUICK=False, REALBLUR=True,
              CHECKPOINT_DIR=str(vm[4] / "reference"), **TINY["03"])
    final, reference = load_checkpoint(unet_run / "last.pt"), load_checkpoint(vm[4] / "reference" / "unet+realblur" / "last.pt")
    assert final["epoch"] == reference["epoch"] == TINY["03"]["EPOCHS"]
    assert final["history"]["val_loss"] == reference["history"]["val_loss"]
    for name, tensor in reference["model"].items():
        assert torch.equal(final["model"][name], tensor), f"{name} differs from the uninterrupted run"
    data = final["config"]["data"]
    assert data["extra"].endswith("/datasets/RealBlur") and data["extra_ratio"] == 0.3  # trained with RealBlur throughout
    assert "perceptual" in final["config"]["loss"]["weights"] and final["config"]["num_workers"] == 2  # the real configuration

    # VM 5: notebook 04.
    world.run(vm[5], "04_edsr_super_resolution.ipynb", "VM5 04", QUICK=False, **TINY["04"])
    assert (checkpoints / "edsr" / "best.pt").is_file()

    # VM 6: notebook 05 finds every network's run on Drive, fine-tunes the cascade, and restores an upload. An
    # earlier upload of the same name is in the folder already: Colab saves the new one as "photo (1).png".
    uploads_on_drive = checkpoints / "my_pictures"
    uploads_on_drive.mkdir(parents=True)
    shutil.copy(vm[2] / "content" / "datasets" / "GOPRO_Large" / "test" / "seq00" / "sharp" / "000000.png", uploads_on_drive / "photo.png")
    world.uploads.mkdir()
    shutil.copy(vm[2] / "content" / "datasets" / "GOPRO_Large" / "test" / "seq00" / "blur" / "000001.png", world.uploads / "photo.png")
    evaluation = world.run(vm[6], "05_pipeline_evaluation.ipynb", "VM6 05", QUICK=False, UPLOAD=True, **TINY["05"])
    text = stream_text(evaluation)
    for network in ("dncnn/best.pt", "unet+realblur/best.pt", "edsr/best.pt"):
        assert f"/drive/MyDrive/{NAME}/checkpoints/{network}" in text  # the runs of VMs 2-5, found on Drive
    assert (checkpoints / "cascade" / "weights" / "unet.pt").is_file() and (checkpoints / "evaluation" / "cascade.csv").is_file()
    assert (uploads_on_drive / "photo (1).png").read_bytes() == (world.uploads / "photo.png").read_bytes()
    assert not (vm[6] / "content" / "photo.png").exists()  # saved where the notebook reads it, no stray copy in /content
    assert "restored 1 into" in text and (checkpoints / "my_pictures_restored" / "photo (1).png").is_file()
    assert "upload" in world.log_lines()

    assert world.downloads() == downloads  # only notebook 01 downloaded anything
    seconds = ", ".join(f"{label} {value:.0f} s" for label, value in world.seconds.items())
    print(f"simulated course: {seconds}")  # the cost of each VM on tiny data (shown with -s)


@pytest.mark.timeout(600)
def test_a_cpu_runtime_stops_before_any_work_and_quick_mode_never_mounts_drive(world: World) -> None:
    vm = world.root / "cpu-runtime"
    before = len(world.log_lines())
    with pytest.raises(CellExecutionError) as stop:
        world.run(vm, "02_dncnn_denoising.ipynb", "CPU 02 (auto)")  # the default QUICK = "auto", on a CPU runtime
    assert "Runtime → Change runtime type → T4 GPU" in str(stop.value) and "quota" in str(stop.value)
    stopped = nbformat.read(world.root / "executed" / "CPU 02 (auto).ipynb", as_version=4)
    cells = code_cells(stopped)
    failing = next(index for index, cell in enumerate(cells) if any(o.output_type == "error" for o in cell.outputs))
    assert "notebooks.quick_mode(" in cells[failing].source and all(cell.execution_count is None for cell in cells[failing + 1:])
    assert "No GPU on this Colab runtime" in stream_text(stopped)  # the setup cell said so first

    quick = stream_text(world.run(vm, "02_dncnn_denoising.ipynb", "CPU 02 (QUICK = True)", QUICK=True))
    assert "quick mode: a tiny network" in quick
    assert (vm / "content" / NAME / "outputs" / "checkpoints-quick" / "dncnn" / "best.pt").is_file()
    assert not any(line.startswith("mount") for line in world.log_lines()[before:])  # Drive never mounted
