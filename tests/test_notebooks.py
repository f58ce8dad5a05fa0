"""Notebooks: their committed form, the data and run-folder helpers, the parameter injection, and all five
executed top to bottom in quick mode on the CPU, in order (01 -> 05: 05 loads the checkpoints 02-04 wrote).
How they run in Colab, one VM each, is test_colab_session.py."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from IPython.core.inputtransformer2 import TransformerManager
from nbclient.exceptions import CellExecutionError

from conftest import make_gopro_tree
from helpers import colab, notebooks
from helpers.commands import build_parser, command_function
from helpers.commands import notebooks as notebook_commands
from helpers.io import read_image
from helpers.notebooks import (
    INJECTED_TAG,
    NOTEBOOK_DIR,
    NOTEBOOKS,
    PARAMETERS_TAG,
    DataNotReady,
    checkpoint_root,
    dataset_statistics,
    execute_notebook,
    inject_parameters,
    prepare_data,
    quick_mode,
    quick_parameters,
    run_folder,
    trained_weights,
)
from test_colab import calls, fake_colab, not_colab  # noqa: F401  (fixtures)
from test_data_download import zip_bytes

MAX_FUNCTION_LINES = 5
# Figures each executed notebook must show (PNG outputs), at least.
MIN_FIGURES = {"01": 1, "02": 2, "03": 2, "04": 2, "05": 3}
# Any HTTP(S) request from a notebook goes to a closed local port and fails: quick mode must not download.
NO_NETWORK = {key: "http://127.0.0.1:9" for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def tiny_notebook(*sources: str, parameters: str = "X = 1") -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": [PARAMETERS_TAG]})]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})


def stream_text(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "") + output.get("data", {}).get("text/markdown", "") + output.get("data", {}).get("text/plain", "")
        for cell in code_cells(notebook)
        for output in cell.outputs
    )


# ----------------------------------------------------------------------------- committed form


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name: str) -> None:
    for cell in code_cells(read(name)):
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs in cell {cell.source[:60]!r}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_badge_setup_cell_and_parameters(name: str) -> None:
    notebook = read(name)
    assert notebook.cells[0].cell_type == "markdown"
    assert f"({colab.colab_url(name)})" in notebook.cells[0].source and "colab-badge.svg" in notebook.cells[0].source
    cells = code_cells(notebook)
    assert cells[0].source == colab.setup_cell(), f"{name}: setup cell differs from colab.setup_cell() (run colab-links)"
    assert PARAMETERS_TAG in tags(cells[1]), f"{name}: the second code cell must be the parameters cell"
    assert 'QUICK = "auto"' in cells[1].source
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_metadata_asks_colab_for_a_t4_where_a_notebook_trains(name: str) -> None:
    metadata = read(name).metadata
    if name.startswith("01"):  # downloading needs no GPU: a CPU runtime spares the free tier's GPU quota
        assert "accelerator" not in metadata and "gpuType" not in metadata.colab
    else:
        assert metadata.accelerator == "GPU" and metadata.colab.gpuType == "T4"


def calls_of(name: str, function: str) -> list[str]:
    """The code cells of a notebook that call ``function`` (e.g. "notebooks.prepare_data(")."""
    return [cell.source for cell in code_cells(read(name)) if function in cell.source]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_prepares_its_data_with_one_call(name: str) -> None:
    (cell,) = calls_of(name, "notebooks.prepare_data(")
    assert cell.count("notebooks.prepare_data(") == 1
    if name.startswith("01"):  # 01 downloads first, and ends its data work with the call the others start with
        assert calls_of(name, "notebooks.download_data(") and not calls_of(name, "build_dataset")
    else:  # right after the parameters are resolved, before anything reads the data
        assert code_cells(read(name)).index(next(c for c in code_cells(read(name)) if c.source == cell)) == 2


@pytest.mark.parametrize("name", NOTEBOOKS[1:])
def test_training_notebooks_build_their_datasets_with_one_call_on_their_config(name: str) -> None:
    stage, config = {"02": ("dncnn", "CONFIG"), "03": ("unet", "CONFIG"), "04": ("edsr", "CONFIG"), "05": ("cascade", "FINE_TUNE")}[name[:2]]
    (cell,) = calls_of(name, "recipes.build_datasets(")
    assert f'train_set, val_set = recipes.build_datasets("{stage}", {config})' in cell
    assert not calls_of(name, "build_dataset(") or calls_of(name, "build_dataset(") == [cell]  # no hand-built dataset


@pytest.mark.parametrize(("name", "network"), [("02", "models.DnCNN"), ("03", "models.UNet"), ("04", "models.EDSR"), ("05", "cascade.Cascade")])
def test_training_notebooks_show_their_networks_forward(name: str, network: str) -> None:
    notebook = read(next(n for n in NOTEBOOKS if n.startswith(name)))
    index = next(i for i, cell in enumerate(notebook.cells) if f"inspect.getsource({network}.forward)" in cell.source)
    assert notebook.cells[index].cell_type == "code"
    prose = notebook.cells[index - 1]  # beside the prose that explains it
    assert prose.cell_type == "markdown" and "forward" in prose.source


def stated_square_sizes(text: str) -> set[int]:
    """Sizes of the form NxN in ``text``, N >= 16 (3x3 convolutions and 2x2 poolings are not patches)."""
    return {int(side) for side, _ in re.findall(r"\b(\d+)x(\1)\b", text) if int(side) >= 16}


def patch_settings(notebook: nbformat.NotebookNode) -> set[int]:
    """The patch sides a notebook's cells set: PATCH in its parameters cell and every literal "patch"/"val_patch"."""
    cells = code_cells(notebook)
    parameters = {node.targets[0].id: node.value for node in ast.parse(cells[1].source).body if isinstance(node, ast.Assign)}
    sides = {ast.literal_eval(parameters["PATCH"])} if "PATCH" in parameters else set()
    sides |= {int(side) for cell in cells for side in re.findall(r'"(?:val_)?patch": (\d+)', cell.source)}
    return sides


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_patch_sizes_stated_in_the_text_are_the_ones_the_cells_use(name: str) -> None:
    notebook = read(name)
    sides = patch_settings(notebook)
    allowed = sides | {2 * side for side in sides}  # EDSR's targets and the cascade's outputs are twice the input
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown") + code_cells(notebook)[1].source
    stated = stated_square_sizes(text)
    assert stated <= allowed, f"{name}: the text states {sorted(stated - allowed)}x.. patches; the cells use {sorted(sides)}"


def test_stated_sizes_are_found_in_prose_and_comments() -> None:
    assert stated_square_sizes("48x48 patches of 640x360 frames, 3x3 convolutions, 96x96 targets; 128x12") == {48, 96}


def test_readme_badges_use_the_same_links() -> None:
    readme = (notebooks.REPO_ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        assert colab.colab_url(name) in readme, f"README lacks the Colab link of {name}"
    assert len(colab.COLAB_LINK.findall(readme)) == len(NOTEBOOKS)  # no stale link to another repository
    assert "python -m helpers colab-links" in readme and "Running in Colab from your fork" in readme


def copy_of_the_linked_files(root: Path) -> None:
    for relative in ["helpers/colab.py", "README.md", *(f"notebooks/{name}" for name in NOTEBOOKS)]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(notebooks.REPO_ROOT / relative, root / relative)


def test_colab_links_rewrites_every_badge_setup_cell_and_the_address(tmp_path: Path) -> None:
    copy_of_the_linked_files(tmp_path)
    written = colab.rewrite_colab_links("alice/restoration-fork", "colab", root=tmp_path)
    assert len(written) == 2 + len(NOTEBOOKS)
    constants = (tmp_path / "helpers" / "colab.py").read_text()
    assert 'REPO = "alice/restoration-fork"' in constants and 'BRANCH = "colab"' in constants
    assert 'REPO_URL = "https://github.com/alice/restoration-fork"' in constants
    readme = (tmp_path / "README.md").read_text()
    for name in NOTEBOOKS:
        notebook = nbformat.read(tmp_path / "notebooks" / name, as_version=4)
        link = colab.colab_url(name, "alice/restoration-fork", "colab")
        assert f"({link})" in notebook.cells[0].source and link in readme
        assert code_cells(notebook)[0].source == colab.setup_cell("https://github.com/alice/restoration-fork", "colab")
        assert "your-org" not in notebook.cells[0].source + code_cells(notebook)[0].source
        assert notebook.cells[1:] == read(name).cells[1:] or code_cells(notebook)[1:] == code_cells(read(name))[1:]
    assert "your-org" not in readme
    colab.rewrite_colab_links("alice/restoration-fork", "main", clone_url="file:///srv/mirror.git", root=tmp_path)
    assert 'REPO_URL, BRANCH = "file:///srv/mirror.git", "main"' in code_cells(nbformat.read(tmp_path / "notebooks" / NOTEBOOKS[2], as_version=4))[0].source
    with pytest.raises(ValueError, match="OWNER/NAME"):
        colab.rewrite_colab_links("https://github.com/alice/x", root=tmp_path)


def test_colab_links_command_runs_without_torch(tmp_path: Path) -> None:
    """A fork is pointed at itself before anything heavy is installed: ``python -m helpers colab-links`` on a copy
    of the project, with torch, torchvision, OpenCV and numpy blocked from importing."""
    copy_of_the_linked_files(tmp_path)
    shutil.copytree(notebooks.REPO_ROOT / "helpers", tmp_path / "helpers", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import runpy, sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'cv2', 'numpy'):\n"
        "            raise ImportError(f'{name} is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "sys.argv = ['helpers', 'colab-links', 'bob/fork', '--branch', 'dev']\n"
        "runpy.run_module('helpers', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{2 + len(NOTEBOOKS)} files now point to bob/fork (dev)")
    assert colab.colab_url(NOTEBOOKS[0], "bob/fork", "dev") in (tmp_path / "README.md").read_text()
    assert 'REPO = "bob/fork"' in (tmp_path / "helpers" / "colab.py").read_text()


def test_colab_links_command_rejects_a_bad_name_with_exit_code_2(capsys) -> None:
    args = build_parser().parse_args(["colab-links", "not a repo"])
    assert notebook_commands.colab_links_command(args) == 2
    assert "OWNER/NAME" in capsys.readouterr().err


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_long_functions_or_classes(name: str) -> None:
    for cell in code_cells(read(name)):
        tree = ast.parse(TransformerManager().transform_cell(cell.source))  # IPython magics -> Python
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{name}: {node.name} is {length} lines; move it to helpers/"


# ----------------------------------------------------------------------------- helpers


def test_inject_parameters_follows_parameters_cell_and_replaces_earlier_injection() -> None:
    notebook = tiny_notebook("print(X)")
    inject_parameters(notebook, {"X": 2})
    inject_parameters(notebook, {"X": 3, "NAME": "a'b"})
    assert [tags(cell) for cell in notebook.cells] == [[PARAMETERS_TAG], [INJECTED_TAG], []]
    namespace: dict = {}
    for cell in notebook.cells[:2]:
        exec(cell.source, namespace)
    assert (namespace["X"], namespace["NAME"]) == (3, "a'b")


def test_inject_parameters_needs_a_parameters_cell() -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("X = 1")])
    with pytest.raises(ValueError, match="parameters"):
        inject_parameters(notebook, {"X": 2})


def test_execute_notebook_injects_and_saves_the_failing_copy(tmp_path: Path) -> None:
    source = tmp_path / "tiny.ipynb"
    nbformat.write(tiny_notebook("print(X * 7)", "import os; print(os.environ['MPLBACKEND'])", "1 / (X - 6)"), source)
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        execute_notebook(source, tmp_path / "out" / "tiny.ipynb", {"X": 6})
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    outputs = [cell.outputs for cell in code_cells(executed)]
    assert outputs[2][0].text == "42\n" and outputs[3][0].text == "Agg\n"
    assert outputs[4][0].output_type == "error"
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_quick_mode_outside_colab(not_colab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert quick_mode(True, "gopro:/nowhere") is True and quick_mode(False, "sample") is False
    with pytest.raises(ValueError, match="QUICK"):
        quick_mode("yes", "sample")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert quick_mode("auto", f"gopro:{tmp_path}") is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert quick_mode("auto", f"gopro:{tmp_path / 'missing'}", tmp_path / "no-runs") is True
    assert quick_mode("auto", f"gopro:{tmp_path}") is False
    assert quick_mode("auto", "sample") is False
    # The data is gone but a full run's checkpoint waits: no toy run shadows it (a RealBlur run's folder too).
    (tmp_path / "runs" / "unet+realblur").mkdir(parents=True)
    (tmp_path / "runs" / "unet+realblur" / "last.pt").write_bytes(b"checkpoint")
    missing = f"gopro:{tmp_path / 'missing'}"
    assert quick_mode("auto", missing, tmp_path / "runs", "dncnn") is True  # another network's run does not block
    for model in ("unet", None):
        with pytest.raises(FileNotFoundError, match=r"run notebook 01 first"):
            quick_mode("auto", missing, tmp_path / "runs", model)


def test_quick_mode_in_colab_stops_without_a_gpu_and_never_falls_back_silently(
    fake_colab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(colab.NoGpuError) as stop:
        quick_mode("auto", f"gopro:{tmp_path / 'not-here-yet'}", tmp_path, "unet")
    assert "Runtime → Change runtime type → T4 GPU" in str(stop.value) and "quota" in str(stop.value)
    assert "QUICK = True" in str(stop.value)
    assert quick_mode(True, "gopro:/content/datasets/GOPRO_Large") is True  # asked for: a toy run
    assert quick_mode("auto", "sample", gpu=False) is False  # notebook 01 downloads on a CPU runtime
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # On a GPU "auto" is the full run, even though this new VM has no data yet: prepare_data brings it from Drive.
    assert quick_mode("auto", f"gopro:{tmp_path / 'not-here-yet'}", tmp_path, "unet") is False
    assert "full run" in capsys.readouterr().out
    assert calls(fake_colab) == []  # deciding mounts nothing


def test_run_folders_differ_with_and_without_realblur(tmp_path: Path) -> None:
    with_realblur = {"data": {"source": "gopro:/content/datasets/GOPRO_Large", "extra": "realblur:/content/datasets/RealBlur"}}
    without = {"data": {"source": "gopro:/content/datasets/GOPRO_Large", "extra": None}}
    assert run_folder(tmp_path, "unet", with_realblur) == tmp_path / "unet+realblur"
    assert run_folder(tmp_path, "unet", without) == run_folder(tmp_path, "unet", {}) == tmp_path / "unet"
    assert run_folder(tmp_path, "dncnn", {"data": {"source": "sample"}}) == tmp_path / "dncnn"


def test_trained_weights_are_each_networks_newest_run_or_the_bundled_ones(tmp_path: Path) -> None:
    for folder, age in (("unet", 200), ("unet+realblur", 100), ("unet-old-copy", 0), ("edsr", 50)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "best.pt").write_bytes(b"weights")
        os.utime(tmp_path / folder / "best.pt", (1e9 - age, 1e9 - age))
    chosen = trained_weights(tmp_path)
    assert chosen["unet"] == tmp_path / "unet+realblur" / "best.pt"  # newer than unet/; "unet-old-copy" is no run
    assert chosen["edsr"] == tmp_path / "edsr" / "best.pt"
    assert chosen["dncnn"] == notebooks.DEFAULT_WEIGHTS_DIR / "dncnn.pt"  # not trained yet: bundled


def test_checkpoint_root(tmp_path: Path) -> None:
    assert checkpoint_root(tmp_path, quick=False) == tmp_path
    assert checkpoint_root(None, quick=True) == notebooks.REPO_ROOT / "outputs" / "checkpoints-quick"
    assert quick_parameters(tmp_path)["CHECKPOINT_DIR"] == str(tmp_path.resolve() / "checkpoints")


def test_dataset_statistics_counts_pairs_sequences_and_sizes(gopro_root: Path) -> None:
    rows = {row["split"]: row for row in dataset_statistics({"tiny": f"gopro:{gopro_root}"})}
    on_disk = {split: sorted(gopro_root.glob(f"{split}/*/sharp/*.png")) for split in ("train", "test")}
    assert rows["train"]["pairs"] + rows["val"]["pairs"] == len(on_disk["train"])
    assert rows["test"]["pairs"] == len(on_disk["test"])
    assert rows["train"]["sequences"] + rows["val"]["sequences"] == len({p.parent.parent for p in on_disk["train"]})
    height, width = read_image(on_disk["test"][0]).shape[:2]
    assert rows["test"]["frame sizes"] == f"{width}x{height} (1)"


def test_cli_notebooks_command_is_wired() -> None:
    args = build_parser().parse_args(["notebooks", "--only", "01", "05"])
    assert command_function(args.command) is notebook_commands.notebooks_command
    assert (args.out, args.full, args.only) == ("outputs/notebooks", False, ["01", "05"])


# ----------------------------------------------------------------------------- data on a fresh VM


TINY_GOPRO = {"train": 3, "test": 1}  # sequences of 2 frames


def kept_on_drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny GOPRO_Large.zip in Drive's datasets folder, as notebook 01 leaves it; nothing can be downloaded."""
    tree = make_gopro_tree(tmp_path / "made" / "GOPRO_Large", TINY_GOPRO, frames=2, size=(64, 36))
    archives = tmp_path / "drive" / "MyDrive" / colab.PROJECT / "datasets"
    archives.mkdir(parents=True, exist_ok=True)
    (archives / "GOPRO_Large.zip").write_bytes(
        zip_bytes({path.relative_to(tree).as_posix(): path.read_bytes() for path in sorted(tree.rglob("*.png"))}, "GOPRO_Large/"))
    closed = "http://127.0.0.1:9"  # a closed local port: any download fails at once
    for name, value in {"GOPRO_URLS": f"{closed}/G.zip", "REALBLUR_URLS": f"{closed}/R.tar.gz", "DOWNLOAD_ATTEMPTS": "1",
                        "GOPRO_EXPECTED_TRAIN": "6", "GOPRO_EXPECTED_TEST": "2"}.items():
        monkeypatch.setenv(name, value)
    return archives


def test_prepare_data_on_a_fresh_vm_extracts_the_archive_from_drive_and_caches_the_frames(
    fake_colab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    kept_on_drive(tmp_path, monkeypatch)
    monkeypatch.setattr(colab, "DRIVE_MOUNTPOINT", tmp_path / "vm" / "drive")
    gopro = tmp_path / "vm" / "datasets" / "GOPRO_Large"
    caches = prepare_data(f"gopro:{gopro}", cache_dir=tmp_path / "vm" / "cache")
    out = capsys.readouterr().out
    assert "copying and extracting" in out and "instead of downloading" in out
    assert (gopro / ".complete").is_file() and len(list(gopro.glob("*/*/sharp/*.png"))) == 8
    views = [(path.name.split("-")[0], path.name.rsplit("-", 1)[1]) for path in caches.iterdir()]
    assert caches == tmp_path / "vm" / "cache" and len(views) == 6  # training and validation frames: 3 views each
    assert sorted(set(views)) == [("blurry", "x1"), ("sharp", "x1"), ("sharp", "x2")]  # blurry and sharp 640x360, sharp 1280x720
    assert calls(fake_colab) == [f"mount {tmp_path / 'vm' / 'drive'}"]
    prepare_data(f"gopro:{gopro}", cache_dir=tmp_path / "vm" / "cache")  # on this VM now: used as it is
    assert "copying" not in capsys.readouterr().out and len(calls(fake_colab)) == 1  # Drive not even looked at


def test_prepare_data_says_to_run_01_or_to_drop_realblur_and_never_lets_realblur_block_gopro(
    fake_colab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(colab, "DRIVE_MOUNTPOINT", tmp_path / "vm" / "drive")
    gopro, realblur = tmp_path / "vm" / "datasets" / "GOPRO_Large", tmp_path / "vm" / "datasets" / "RealBlur"
    with pytest.raises(DataNotReady, match=r"DATA: GOPRO_Large is neither on this VM .* nor on Drive .*GOPRO_Large.zip\)\. "
                                           r"Run notebook 01 once"):
        prepare_data(f"gopro:{gopro}", realblur=f"realblur:{realblur}")
    kept_on_drive(tmp_path, monkeypatch)  # notebook 01 has run since
    with pytest.raises(DataNotReady) as missing:
        prepare_data(f"gopro:{gopro}", realblur=f"realblur:{realblur}", cache_dir=tmp_path / "cache")
    assert str(missing.value).startswith("REALBLUR: RealBlur-J is neither on this VM")
    assert "set REALBLUR = None to continue without it; that changes the run, so it starts a new run folder" in str(missing.value)
    assert (gopro / ".complete").is_file()  # GOPRO came first and is ready
    prepare_data(f"gopro:{gopro}", realblur=None, cache_dir=tmp_path / "cache")  # and REALBLUR = None goes on


def test_prepare_data_outside_colab_and_for_the_sample_set_never_mounts_drive(
    fake_colab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(tmp_path / "cache"))
    prepare_data("sample")  # quick mode's data: built on this machine
    assert calls(fake_colab) == [] and any((tmp_path / "cache" / "frames").iterdir())
    with pytest.raises(ValueError, match="GOPRO_Large"):  # data_download.sh could not install it under this name
        prepare_data(f"gopro:{tmp_path / 'gopro-elsewhere'}")


def test_prepare_data_elsewhere_points_to_notebook_01(not_colab, tmp_path: Path) -> None:
    with pytest.raises(DataNotReady, match=r"GOPRO_Large is not at .*Run notebook 01 once"):
        prepare_data(f"gopro:{tmp_path / 'GOPRO_Large'}")


def test_download_data_keeps_the_archives_on_drive_and_goes_on_without_realblur(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, fake_colab
) -> None:
    from test_data_download import COUNTS_ENV, GOPRO_ZIP, REALBLUR_TGZ

    monkeypatch.setattr(colab, "DRIVE_MOUNTPOINT", tmp_path / "vm1" / "drive")
    closed = "http://127.0.0.1:9"  # a closed local port: every download fails at once, nothing leaves the machine
    for name, value in {**COUNTS_ENV, "REALBLUR_URLS": f"{closed}/R.tar.gz", "GOPRO_URLS": f"{closed}/G.zip", "DOWNLOAD_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match="gopro was not installed"):  # GOPRO must succeed
        notebooks.download_data(f"gopro:{tmp_path / 'vm1' / 'datasets' / 'GOPRO_Large'}")
    archives = tmp_path / "drive" / "MyDrive" / colab.PROJECT / "datasets"
    (archives / "GOPRO_Large.zip").write_bytes(GOPRO_ZIP)  # fetched by hand and put on Drive
    realblur = f"realblur:{tmp_path / 'vm1' / 'datasets' / 'RealBlur'}"
    assert notebooks.download_data(f"gopro:{tmp_path / 'vm1' / 'datasets' / 'GOPRO_Large'}", realblur=realblur) is None
    output = capsys.readouterr().out
    assert "instead of downloading" in output and output.splitlines()[-1].startswith("realblur was not installed")
    (archives / "RealBlur.tar.gz").write_bytes(REALBLUR_TGZ)
    assert notebooks.download_data(f"gopro:{tmp_path / 'vm1' / 'datasets' / 'GOPRO_Large'}", realblur=realblur) == realblur
    assert (tmp_path / "vm1" / "datasets" / "RealBlur" / ".complete").is_file()
    assert "warning" not in capsys.readouterr().out  # both archives are on Drive


# ----------------------------------------------------------------------------- executed in quick mode


class Series:
    """Executes the notebooks in order, each at most once, on first request (so per-test durations are per notebook)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.env = {
            **NO_NETWORK,
            "IMAGE_REPAIR_CACHE": str(out_dir / "cache"),  # the sample set and frame caches, built by 01
            "TORCH_HOME": str(out_dir / "torch_home"),  # weights cached on this machine must not hide a download
        }
        self.results: dict[str, Exception | None] = {}

    def run(self, name: str) -> nbformat.NotebookNode:
        for earlier in NOTEBOOKS[: NOTEBOOKS.index(name) + 1]:
            if earlier not in self.results:
                try:
                    execute_notebook(NOTEBOOK_DIR / earlier, self.out_dir / earlier, quick_parameters(self.out_dir), self.env)
                    self.results[earlier] = None
                except CellExecutionError as error:
                    self.results[earlier] = error
        if self.results[name] is not None:
            pytest.fail(f"{name} failed (executed copy: {self.out_dir / name}):\n{str(self.results[name])[-3000:]}")
        return nbformat.read(self.out_dir / name, as_version=4)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    return Series(tmp_path_factory.mktemp("notebooks"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(series: Series, name: str) -> None:
    executed = series.run(name)
    cells = code_cells(executed)
    assert all(cell.execution_count is not None for cell in cells), f"{name}: not every cell ran"
    figures = [output for cell in cells for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= MIN_FIGURES[name[:2]], f"{name}: {len(figures)} figures"
    text = stream_text(executed)
    model = {"02": "dncnn", "03": "unet", "04": "edsr"}.get(name[:2])
    if model:
        for checkpoint in ("last.pt", "best.pt"):
            assert (series.out_dir / "checkpoints" / model / checkpoint).is_file()
    assert "frame caches in" in text  # prepare_data ran
    if name[:2] in ("02", "03", "04", "05"):  # each training notebook shows its network's forward
        assert "def forward(self, images: torch.Tensor)" in text
    if name.startswith("02"):  # the optional comparison with the authors' network: no file in CI, skipped politely
        assert "skipped: /content/drive/MyDrive/GD_Color_Blind.mat not found; the DnCNN authors publish it" in text
    if name.startswith("05"):
        for row in ("input (bicubic x2)", "+ DnCNN", "+ UNet", "+ EDSR", "+ unsharp", "bicubic + unsharp"):
            assert f"| {row} " in text, f"ablation row {row!r} missing"
        assert (series.out_dir / "checkpoints" / "evaluation" / "cascade.csv").is_file()
        assert "| stage-wise | + unsharp " in text and "| end-to-end | + unsharp " in text  # the fine-tuning section
        assert sorted(p.name for p in (series.out_dir / "checkpoints" / "cascade" / "weights").iterdir()) == ["dncnn.pt", "edsr.pt", "unet.pt"]
