"""A whole Colab session played on this machine: fork, clone, data, full training, a dead VM, and the resume.

- "GitHub" is a local bare repository of this working tree on branch ``colab``, which ``colab-links``
  points every setup cell at (the same REPO_URL mechanism a fork uses); the notebooks are executed from
  that copy, in an empty "/content" (``IMAGE_REPAIR_CONTENT``) with nothing of this checkout importable.
- Colab is the fake ``google.colab`` of tests/fake_colab; Drive is a temporary folder that outlives VMs.
- GOPRO is a tiny GOPRO_Large.zip served from 127.0.0.1; RealBlur's source answers 404, so the session
  also shows RealBlur failing and training going on with GOPRO alone.
- Session A runs notebook 01, then 03 in full mode on tiny settings, and its kernel (with its DataLoader
  workers) is SIGKILLed as soon as the first epoch's checkpoint reached Drive. Session B, a new VM with an
  empty /content, runs 01 (the archive comes from Drive: no download) and 03, which resumes from Drive
  and must end with the same weights as an uninterrupted run of 03.
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
from nbclient.exceptions import DeadKernelError

from helpers.checkpoint import load_checkpoint
from helpers.notebooks import execute_notebook
from test_data_download import FixtureServer, zip_bytes
from test_notebooks import NO_NETWORK, stream_text
from conftest import make_gopro_tree

REPO = Path(__file__).resolve().parents[1]
FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"
NAME = "image-repair-and-restoration"
GOPRO = {"train": 3, "test": 1}  # sequences of 2 frames: 6 training pairs (2 of them validation), 2 test pairs
TINY_RUN = {"ARCH": {"base_channels": 8, "depth": 2}, "EPOCHS": 3, "BATCH_SIZE": 2, "PATCH": 32, "STEPS_PER_EPOCH": 4}
PERCEPTUAL = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def publish_this_checkout(root: Path) -> Path:
    """This working tree (tracked files as they are now, without the demo weights neither 01 nor 03 needs)
    as a bare repository on branch ``colab``, its setup cells pointing at it through ``colab-links``."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    source = root / "fork"
    for name in tracked:
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


class World:
    """What outlives a VM: the repository, the dataset server, Drive; and the VMs' own folders."""

    def __init__(self, root: Path, server: FixtureServer) -> None:
        self.root, self.server = root, server
        self.fork = publish_this_checkout(root)
        self.drive = root / "drive"
        self.log = root / "colab.log"
        self.torch_home = root / "torch_home"  # random MobileNetV3 weights where torchvision caches ImageNet's
        (self.torch_home / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(torchvision.models.mobilenet_v3_large().state_dict(), self.torch_home / "hub" / "checkpoints" / PERCEPTUAL)
        gopro = make_gopro_tree(root / "GOPRO_Large", GOPRO, frames=2, size=(64, 36))
        server.files["/GOPRO_Large.zip"] = zip_bytes(
            {p.relative_to(gopro).as_posix(): p.read_bytes() for p in sorted(gopro.rglob("*.png"))}, "GOPRO_Large/")
        self.seconds: dict[str, float] = {}

    def env(self, vm: Path, marker: str) -> dict[str, str]:
        for folder in ("content", "cache", "tmp"):
            (vm / folder).mkdir(parents=True, exist_ok=True)
        return {
            **NO_NETWORK, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PIP_NO_INDEX": "1",
            "PYTHONPATH": str(FAKE_COLAB),  # google.colab importable: a Colab runtime; nothing of this checkout
            "IMAGE_REPAIR_CONTENT": str(vm / "content"), "IMAGE_REPAIR_CACHE": str(vm / "cache"), "TMPDIR": str(vm / "tmp"),
            "FAKE_DRIVE": str(self.drive), "FAKE_COLAB_LOG": str(self.log), "TORCH_HOME": str(self.torch_home),
            "GOPRO_URLS": self.server.url("/GOPRO_Large.zip"), "REALBLUR_URLS": self.server.url("/RealBlur.tar.gz"),
            "GOPRO_EXPECTED_TRAIN": str(2 * GOPRO["train"]), "GOPRO_EXPECTED_TEST": str(2 * GOPRO["test"]),
            "OMP_NUM_THREADS": "1", "SESSION_MARKER": marker,
        }

    def run(self, vm: Path, notebook: str, label: str, kill_when: Path | None = None, **overrides) -> nbformat.NotebookNode:
        """Execute a notebook of the fork in ``vm``'s /content in full mode (01: the data; 03: ``TINY_RUN``) with
        ``overrides``; with ``kill_when``, SIGKILL the VM's processes as soon as that file exists."""
        content = vm / "content"
        parameters = {"DATASETS_DIR": f"{content}/datasets"} if notebook.startswith("01") else {
            "DATA": f"gopro:{content}/datasets/GOPRO_Large", "REALBLUR": f"realblur:{content}/datasets/RealBlur", **TINY_RUN}
        parameters.update(QUICK=False, **overrides)
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
    server = FixtureServer()
    server.thread.start()
    yield World(tmp_path_factory.mktemp("colab_session"), server)
    server.httpd.shutdown()
    server.httpd.server_close()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.timeout(1800)  # five notebook kernels: minutes on a loaded two-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the VM's processes through /proc")
def test_a_disconnected_full_run_resumes_on_a_new_vm_with_the_same_weights(world: World) -> None:
    drive_run = world.drive / "MyDrive" / NAME / "checkpoints" / "unet"
    vm1, vm2 = world.root / "vm1", world.root / "vm2"

    prepared = stream_text(world.run(vm1, "01_data_preparation.ipynb", "A 01"))
    assert "RealBlur-J skipped" in prepared and "HTTP 404" in prepared  # RealBlur failing never stops GOPRO
    assert (world.drive / "MyDrive" / NAME / "datasets" / "GOPRO_Large.zip").is_file()  # kept for the next VM
    assert (vm1 / "content" / NAME / "helpers" / "colab.py").is_file()  # cloned from the bare repository
    world.run(vm1, "03_unet_deblurring.ipynb", "A 03 (killed)", kill_when=drive_run / "last.pt")
    interrupted = load_checkpoint(drive_run / "last.pt")
    assert 1 <= interrupted["epoch"] < TINY_RUN["EPOCHS"]  # killed mid-run, after the first epoch reached Drive

    downloads = len(world.server.requests)
    prepared_again = stream_text(world.run(vm2, "01_data_preparation.ipynb", "B 01"))
    assert "instead of downloading" in prepared_again
    assert [path for path, _ in world.server.requests[downloads:]] == ["/RealBlur.tar.gz"]  # GOPRO not downloaded again
    resumed = stream_text(world.run(vm2, "03_unet_deblurring.ipynb", "B 03 (resumed)"))
    assert f"/drive/MyDrive/{NAME}/checkpoints/unet/last.pt after epoch {interrupted['epoch']}" in resumed  # from Drive
    assert "RealBlur-J skipped, training goes on without it" in resumed
    world.run(vm2, "03_unet_deblurring.ipynb", "reference", CHECKPOINT_DIR=str(vm2 / "reference"))

    final, reference = load_checkpoint(drive_run / "last.pt"), load_checkpoint(vm2 / "reference" / "unet" / "last.pt")
    assert final["epoch"] == reference["epoch"] == TINY_RUN["EPOCHS"]
    assert final["history"]["val_loss"] == reference["history"]["val_loss"]
    for name, tensor in reference["model"].items():
        assert torch.equal(final["model"][name], tensor), f"{name} differs from the uninterrupted run"
    assert final["config"]["data"]["extra"] is None and final["config"]["data"]["extra_ratio"] == 0.0  # GOPRO alone
    assert "perceptual" in final["config"]["loss"]["weights"] and final["config"]["num_workers"] == 2  # full mode, tiny settings

    log = world.log.read_text().splitlines()
    assert "flush_and_unmount" in log and any(line.startswith("mount ") for line in log)
    seconds = ", ".join(f"{label} {value:.0f} s" for label, value in world.seconds.items())
    print(f"simulated session: {seconds}")  # the cost of a disconnect, on tiny data (shown with -s)
