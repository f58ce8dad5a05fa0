"""Tests for the Colab glue with the fake ``google.colab`` of tests/fake_colab: nothing is cloned from the
internet, installed or mounted for real. The setup cell's clone/pull/Drive logic runs against local git
repositories; the whole session is played in test_colab_session.py."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import ipywidgets
import pytest

from helpers import colab

FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.is_file() else []


def google_modules() -> list[str]:
    return [name for name in sys.modules if name == "google" or name.startswith("google.")]


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """Import the fake google.colab; Drive is tmp_path/drive, the call log tmp_path/colab.log (yielded).
    Afterwards the fake is gone from sys.modules, so later tests do not run "in Colab"."""
    for name in google_modules():
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [str(FAKE_COLAB), *sys.path])
    monkeypatch.setenv("FAKE_DRIVE", str(tmp_path / "drive"))
    monkeypatch.setenv("FAKE_COLAB_LOG", str(tmp_path / "colab.log"))
    import google.colab  # noqa: F401

    yield tmp_path / "colab.log"
    for name in google_modules():
        del sys.modules[name]  # the entries deleted above are put back by monkeypatch


@pytest.fixture
def not_colab(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "google.colab", None)  # a None entry makes the import fail
    monkeypatch.setattr(sys, "path", list(sys.path))


class Recorder:
    """Records commands instead of running them, with the constraints file pip was given."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.constraints = ""

    def __call__(self, command) -> None:
        command = list(command)
        self.commands.append(command)
        if "-c" in command:
            self.constraints = Path(command[command.index("-c") + 1]).read_text()


def test_detection(fake_colab):
    assert colab.in_colab()


def test_detection_outside_colab(not_colab):
    assert not colab.in_colab()
    assert colab.mount_drive() is None and colab.drive_folder("x") is None
    colab.flush_drive()  # nothing to flush outside Colab


def test_drive_folders_mount_once_and_flush_unmounts(fake_colab, tmp_path):
    mountpoint = tmp_path / "content" / "drive"
    folder = colab.default_checkpoint_dir(mountpoint=mountpoint)
    assert folder == mountpoint / "MyDrive" / colab.PROJECT / "checkpoints" and folder.is_dir()
    assert colab.drive_folder("datasets", mountpoint=mountpoint) == mountpoint / "MyDrive" / colab.PROJECT / "datasets"
    assert (tmp_path / "drive" / "MyDrive" / colab.PROJECT / "datasets").is_dir()  # really on "Drive"
    assert calls(fake_colab) == [f"mount {mountpoint}"]  # mounted once
    colab.flush_drive(mountpoint)
    assert calls(fake_colab)[-1] == "flush_and_unmount" and not mountpoint.exists()
    colab.flush_drive(mountpoint)  # nothing mounted any more: nothing happens
    assert calls(fake_colab).count("flush_and_unmount") == 1


def test_local_checkpoint_folder(not_colab):
    assert colab.default_checkpoint_dir() == Path(colab.__file__).resolve().parents[1] / "outputs" / "checkpoints"


def test_setup_in_colab_installs_once_per_vm_keeping_torch_and_mounts_nothing(fake_colab, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(colab.tempfile, "tempdir", str(tmp_path / "vm-tmp"))
    (tmp_path / "vm-tmp").mkdir()
    runner = Recorder()
    info = colab.setup(colab.LOCAL_ROOT, run=runner)
    (install,) = runner.commands
    assert install[:4] == [sys.executable, "-m", "pip", "install"]
    assert install[install.index("-r") + 1] == str(colab.LOCAL_ROOT / "requirements.txt")
    assert f"torch=={metadata.version('torch')}" in runner.constraints.splitlines()
    assert info.colab and info.root == colab.LOCAL_ROOT and "Colab" in capsys.readouterr().out
    widget_manager = ["enable_custom_widget_manager"] if int(ipywidgets.__version__.split(".")[0]) >= 8 else []
    assert calls(fake_colab) == widget_manager  # Drive is not mounted by setup (quick mode never mounts it)
    colab.setup(colab.LOCAL_ROOT, run=runner)
    assert len(runner.commands) == 1  # the second notebook on this VM does not install again


def test_setup_on_a_colab_cpu_runtime_says_at_once_how_to_get_a_gpu(fake_colab, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(colab.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(colab, "has_gpu", lambda: False)
    colab.setup(colab.LOCAL_ROOT, run=Recorder())
    assert "No GPU on this Colab runtime" in capsys.readouterr().out and "Runtime → Change runtime type → T4 GPU" in colab.NO_GPU
    monkeypatch.setattr(colab, "has_gpu", lambda: True)
    colab.setup(colab.LOCAL_ROOT, run=Recorder())
    assert "No GPU" not in capsys.readouterr().out


def test_widget_manager_stays_off_for_ipywidgets_7(fake_colab, monkeypatch):
    monkeypatch.setattr(colab.metadata, "version", lambda name: "7.7.1")
    assert not colab._enable_widget_manager() and calls(fake_colab) == []
    monkeypatch.setattr(colab.metadata, "version", lambda name: "8.1.5")
    assert colab._enable_widget_manager() and calls(fake_colab) == ["enable_custom_widget_manager"]


def test_setup_outside_colab_uses_this_checkout(not_colab, capsys):
    runner = Recorder()
    info = colab.setup(run=runner)
    assert runner.commands == [] and not info.colab
    assert info.root == Path(colab.__file__).resolve().parents[1]
    import torch

    expected = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    assert expected in info.device and expected in capsys.readouterr().out


def test_setup_rejects_a_folder_that_is_not_a_checkout(not_colab, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        colab.setup(tmp_path, run=Recorder())


# ----------------------------------------------------------------------------- the setup cell's git part


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def tiny_remote(tmp_path: Path) -> Path:
    """A bare repository with a 'helpers/colab.py' on branch 'dev', standing in for GitHub."""
    work = tmp_path / "work"
    (work / "helpers").mkdir(parents=True)
    (work / "helpers" / "colab.py").write_text("# v1\n")
    git("init", "--quiet", "--initial-branch", "dev", str(work))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "empty", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "v1", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(tmp_path / "repo.git"))
    return tmp_path / "repo.git"


def run_setup_git_part(cell: str, content: Path) -> dict:
    """Execute the setup cell up to the import of helpers, in ``content`` (Colab's /content); its variables."""
    code = cell[: cell.index("sys.path.insert(0, str(ROOT))")]
    namespace: dict = {}
    previous = Path.cwd()
    try:
        import os

        os.chdir(content)
        exec(compile(code, "setup-cell", "exec"), namespace)
    finally:
        os.chdir(previous)
    return namespace


def test_setup_cell_clones_a_branch_then_pulls_it(fake_colab, tmp_path):
    remote = tiny_remote(tmp_path)
    content = tmp_path / "content"
    content.mkdir()
    cell = colab.setup_cell(remote.as_uri(), "dev")
    first = run_setup_git_part(cell, content)
    assert first["ROOT"] == content / "repo" and (content / "repo" / "helpers" / "colab.py").read_text() == "# v1\n"
    work = tmp_path / "work"
    (work / "helpers" / "colab.py").write_text("# v2\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-am", "v2", cwd=work)
    git("push", "--quiet", str(remote), "dev", cwd=work)
    second = run_setup_git_part(cell, content)  # an existing /content/<repo> is updated, not an error
    assert second["ROOT"] == content / "repo" and (content / "repo" / "helpers" / "colab.py").read_text() == "# v2\n"


def test_setup_cell_stops_with_one_line_when_the_clone_fails(fake_colab, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    cell = colab.setup_cell((tmp_path / "no-such-repo").as_uri(), "main")
    with pytest.raises(SystemExit) as stop:
        run_setup_git_part(cell, content)
    message = str(stop.value)
    assert "\n" not in message and "could not clone" in message and "no-such-repo" in message
    assert "Set REPO_URL and BRANCH above" in message and not (content / "no-such-repo").exists()


def test_setup_cell_uses_a_copy_on_drive_without_cloning(fake_colab, tmp_path, monkeypatch):
    content = tmp_path / "content"
    content.mkdir()
    copy = tmp_path / "drive" / "MyDrive" / "code"
    cell = colab.setup_cell("https://invalid.example/never-cloned", "main")
    cell = cell.replace("REPO_ON_DRIVE = None", f'REPO_ON_DRIVE = "{copy}"').replace('"/content/drive"', f'"{content}/drive"')
    namespace = run_setup_git_part(cell, content)
    assert namespace["ROOT"] == copy and calls(fake_colab) == [f"mount {content}/drive"]
    assert list(content.iterdir()) == [content / "drive"]  # nothing cloned


def test_setup_cell_finds_a_local_checkout_without_git(not_colab, tmp_path):
    namespace = run_setup_git_part(colab.setup_cell("https://invalid.example/x", "main"), colab.LOCAL_ROOT / "notebooks")
    assert namespace["ROOT"] == colab.LOCAL_ROOT


# ----------------------------------------------------------------------------- uploads and downloads


def test_file_picker_reads_colab_uploads_where_colab_saves_them(fake_colab, tmp_path, monkeypatch, capsys):
    """Colab's files.upload writes each file into the current folder itself, renaming a taken name "a (1).png";
    the picker runs it in its folder and returns the files that appeared there, never a stale one."""
    picked = tmp_path / "picked"
    picked.mkdir()
    (picked / "a.png").write_bytes(b"new a")
    (picked / "b.jpg").write_bytes(b"b")
    monkeypatch.setenv("FAKE_UPLOADS", str(picked))
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "a.png").write_bytes(b"uploaded yesterday")
    monkeypatch.chdir(tmp_path)  # Colab's /content
    picker = colab.FilePicker(saved)
    assert picker.paths() == [saved / "a (1).png", saved / "b.jpg"]
    assert (saved / "a (1).png").read_bytes() == b"new a" and (saved / "a.png").read_bytes() == b"uploaded yesterday"
    assert Path.cwd() == tmp_path and not (tmp_path / "a.png").exists()  # back in /content, no stray copy there
    assert "Saving a.png to a (1).png" in capsys.readouterr().out and calls(fake_colab) == ["upload"]


def browser_upload_state(name: str, content: bytes) -> dict:
    """The state a browser sends a FileUpload after one file was picked (binary buffers arrive as memoryviews).

    ipywidgets 8 sends the files as ``value``; 7 (Colab's) sends ``metadata`` and ``data`` and counts up
    ``_counter``, from which the widget builds its read-only ``value``."""
    file, modified_ms = {"name": name, "type": "image/jpeg", "size": len(content)}, 1704067200000
    if int(ipywidgets.__version__.split(".")[0]) >= 8:
        return {"value": [{**file, "last_modified": modified_ms, "content": memoryview(content)}]}
    return {"metadata": [{**file, "lastModified": modified_ms}], "data": [memoryview(content)], "_counter": 1}


def test_file_picker_outside_colab_saves_what_the_widget_holds(not_colab, tmp_path):
    picker = colab.FilePicker(tmp_path / "saved")
    assert isinstance(picker.widget, ipywidgets.FileUpload)
    assert picker.paths() == []  # nothing picked yet
    picker.widget.set_state(browser_upload_state("../../escape.jpg", b"jpeg bytes"))
    assert picker.paths() == [tmp_path / "saved" / "escape.jpg"]  # base name only: never outside the folder
    assert (tmp_path / "saved" / "escape.jpg").read_bytes() == b"jpeg bytes"


def test_offer_download_zips_the_folder(fake_colab, tmp_path):
    import zipfile

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.png").write_bytes(b"x")
    archive = colab.offer_download(tmp_path / "out", tmp_path / "results.zip")
    assert zipfile.ZipFile(archive).namelist() == ["x.png"]
    assert calls(fake_colab) == [f"download {archive}"] and list(tmp_path.glob("tmp*")) == []
