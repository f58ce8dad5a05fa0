"""Tests for the Colab glue with a fake ``google.colab`` module: nothing is cloned, installed or mounted for real."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from helpers import colab


class FakeDrive:
    """Stands in for ``google.colab.drive``: records mounts and creates the MyDrive folder like the real one."""

    def __init__(self) -> None:
        self.mounts: list[str] = []

    def mount(self, mountpoint: str, *args, **kwargs) -> None:
        self.mounts.append(mountpoint)
        (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def fake_colab(monkeypatch) -> FakeDrive:
    drive = FakeDrive()
    google = types.ModuleType("google")
    google_colab = types.ModuleType("google.colab")
    google_colab.drive = drive
    google.colab = google_colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google_colab)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return drive


@pytest.fixture
def not_colab(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "google.colab", None)  # a None entry makes the import fail
    monkeypatch.setattr(sys, "path", list(sys.path))


class Recorder:
    """Records commands instead of running them; ``git clone`` creates a minimal checkout."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.constraints = ""

    def __call__(self, command) -> None:
        command = list(command)
        self.commands.append(command)
        if command[:2] == ["git", "clone"]:
            root = Path(command[-1])
            (root / "helpers").mkdir(parents=True)
            (root / "helpers" / "__init__.py").write_text("")
            (root / "requirements.txt").write_text("torch>=2.2\n")
        if "-c" in command:
            self.constraints = Path(command[command.index("-c") + 1]).read_text()


def test_detection(fake_colab):
    assert colab.in_colab()


def test_detection_outside_colab(not_colab):
    assert not colab.in_colab()
    assert colab.mount_drive() is None


def test_drive_checkpoint_folder_mounts_once(fake_colab, tmp_path):
    folder = colab.default_checkpoint_dir("my-project", mountpoint=tmp_path / "drive")
    assert folder == tmp_path / "drive" / "MyDrive" / "my-project" / "checkpoints"
    assert folder.is_dir()
    assert colab.default_checkpoint_dir("my-project", mountpoint=tmp_path / "drive") == folder
    assert fake_colab.mounts == [str(tmp_path / "drive")]  # already mounted the second time


def test_local_checkpoint_folder(not_colab):
    assert colab.default_checkpoint_dir() == Path(colab.__file__).resolve().parents[1] / "outputs" / "checkpoints"


def test_setup_in_colab_clones_installs_keeping_torch_and_mounts(fake_colab, tmp_path, capsys):
    runner = Recorder()
    root = tmp_path / "content" / "repo"
    info = colab.setup(root, "https://example.invalid/repo", mountpoint=tmp_path / "drive", run=runner)

    clone, install = runner.commands
    assert clone == ["git", "clone", "--quiet", "--depth", "1", "https://example.invalid/repo", str(root)]
    assert install[:4] == [sys.executable, "-m", "pip", "install"]
    assert install[install.index("-r") + 1] == str(root / "requirements.txt")
    assert f"torch=={metadata.version('torch')}" in runner.constraints.splitlines()
    assert fake_colab.mounts == [str(tmp_path / "drive")]
    assert info.colab and info.root == root and info.drive == tmp_path / "drive"
    assert info.checkpoint_dir == tmp_path / "drive" / "MyDrive" / colab.PROJECT / "checkpoints"
    assert sys.path[0] == str(root)
    assert "Colab" in capsys.readouterr().out


def test_setup_in_colab_reuses_an_existing_checkout(fake_colab, tmp_path):
    runner = Recorder()
    root = tmp_path / "repo"
    (root / "helpers").mkdir(parents=True)
    (root / "helpers" / "__init__.py").write_text("")
    info = colab.setup(root, install=False, mount=False, run=runner)
    assert runner.commands == [] and info.drive is None and fake_colab.mounts == []


def test_setup_outside_colab_uses_this_checkout(not_colab, capsys):
    runner = Recorder()
    info = colab.setup(run=runner)
    assert runner.commands == []
    assert not info.colab and info.drive is None
    assert info.root == Path(colab.__file__).resolve().parents[1]
    assert str(info.root) in sys.path
    import torch

    expected = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    assert expected in info.device and expected in capsys.readouterr().out


def test_setup_rejects_a_folder_that_is_not_a_checkout(not_colab, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        colab.setup(tmp_path, run=Recorder())
