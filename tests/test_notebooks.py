"""Notebooks: their committed form, the parameter injection and statistics helpers, and all five executed
top to bottom in quick mode on the CPU, in order (01 -> 05: 05 loads the checkpoints 02-04 wrote)."""

from __future__ import annotations

import ast
import importlib
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from IPython.core.inputtransformer2 import TransformerManager
from nbclient.exceptions import CellExecutionError

from helpers import colab, notebooks
from helpers.cli import COMMANDS, build_parser
from helpers.io import read_image
from helpers.notebooks import (
    INJECTED_TAG,
    NOTEBOOK_DIR,
    NOTEBOOKS,
    PARAMETERS_TAG,
    checkpoint_root,
    colab_url,
    dataset_statistics,
    execute_notebook,
    extra_training_pairs,
    inject_parameters,
    quick_mode,
    quick_parameters,
    rewrite_colab_links,
)

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
    assert f"({colab_url(name)})" in notebook.cells[0].source and "colab-badge.svg" in notebook.cells[0].source
    cells = code_cells(notebook)
    assert cells[0].source == colab.setup_cell(), f"{name}: setup cell differs from colab.setup_cell() (run colab-links)"
    assert PARAMETERS_TAG in tags(cells[1]), f"{name}: the second code cell must be the parameters cell"
    assert 'QUICK = "auto"' in cells[1].source
    assert notebook.metadata.kernelspec.name == "python3"


def test_readme_badges_use_the_same_links() -> None:
    readme = (notebooks.REPO_ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        assert colab_url(name) in readme, f"README lacks the Colab link of {name}"
    assert len(notebooks.COLAB_LINK.findall(readme)) == len(NOTEBOOKS)  # no stale link to another repository
    assert "python -m helpers colab-links" in readme and "Running in Colab from your fork" in readme


def test_colab_links_rewrites_every_badge_setup_cell_and_the_address(tmp_path: Path) -> None:
    for relative in ["helpers/colab.py", "README.md", *(f"notebooks/{name}" for name in NOTEBOOKS)]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(notebooks.REPO_ROOT / relative, tmp_path / relative)
    written = rewrite_colab_links("alice/restoration-fork", "colab", root=tmp_path)
    assert len(written) == 2 + len(NOTEBOOKS)
    constants = (tmp_path / "helpers" / "colab.py").read_text()
    assert 'REPO = "alice/restoration-fork"' in constants and 'BRANCH = "colab"' in constants
    assert 'REPO_URL = "https://github.com/alice/restoration-fork"' in constants
    readme = (tmp_path / "README.md").read_text()
    for name in NOTEBOOKS:
        notebook = nbformat.read(tmp_path / "notebooks" / name, as_version=4)
        link = colab_url(name, "alice/restoration-fork", "colab")
        assert f"({link})" in notebook.cells[0].source and link in readme
        assert code_cells(notebook)[0].source == colab.setup_cell("https://github.com/alice/restoration-fork", "colab")
        assert "your-org" not in notebook.cells[0].source + code_cells(notebook)[0].source
    assert "your-org" not in readme
    rewrite_colab_links("alice/restoration-fork", "main", clone_url="file:///srv/mirror.git", root=tmp_path)
    assert 'REPO_URL, BRANCH = "file:///srv/mirror.git", "main"' in code_cells(nbformat.read(tmp_path / "notebooks" / NOTEBOOKS[2], as_version=4))[0].source
    with pytest.raises(ValueError, match="OWNER/NAME"):
        rewrite_colab_links("https://github.com/alice/x", root=tmp_path)


def test_colab_links_command_rejects_a_bad_name_with_exit_code_2(capsys) -> None:
    args = build_parser().parse_args(["colab-links", "not a repo"])
    assert notebooks.colab_links_command(args) == 2
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


def test_quick_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert quick_mode(True, "gopro:/nowhere") is True and quick_mode(False, "sample") is False
    with pytest.raises(ValueError, match="QUICK"):
        quick_mode("yes", "sample")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert quick_mode("auto", f"gopro:{tmp_path}") is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert quick_mode("auto", f"gopro:{tmp_path / 'missing'}", tmp_path / "no-runs") is True
    assert quick_mode("auto", f"gopro:{tmp_path}") is False
    assert quick_mode("auto", "sample") is False
    # A new VM after a disconnect: the data is gone, the full run's checkpoint waits (on Drive): no toy run.
    (tmp_path / "runs" / "unet").mkdir(parents=True)
    (tmp_path / "runs" / "unet" / "last.pt").write_bytes(b"checkpoint")
    missing = f"gopro:{tmp_path / 'missing'}"
    assert quick_mode("auto", missing, tmp_path / "runs", "dncnn") is True  # another network's run does not block
    for model in ("unet", None):
        with pytest.raises(FileNotFoundError, match=r"run notebook 01 first"):
            quick_mode("auto", missing, tmp_path / "runs", model)


def test_extra_training_pairs_are_optional_and_complete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert extra_training_pairs(None) == [] and capsys.readouterr().out == ""
    assert extra_training_pairs(f"realblur:{tmp_path / 'RealBlur'}") == []
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("RealBlur-J skipped") and "RealBlur_J_train_list.txt" in line


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
    module, function = COMMANDS[args.command]
    assert getattr(importlib.import_module(module), function) is notebooks.notebooks_command
    assert (args.out, args.full, args.only) == ("outputs/notebooks", False, ["01", "05"])


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
    if name.startswith("02"):  # the optional comparison with the authors' network: no file in CI, skipped politely
        assert "skipped: /content/drive/MyDrive/GD_Color_Blind.mat not found; the DnCNN authors publish it" in text
    if name.startswith("05"):
        for row in ("input (bicubic x2)", "+ DnCNN", "+ UNet", "+ EDSR", "+ unsharp", "bicubic + unsharp"):
            assert f"| {row} " in text, f"ablation row {row!r} missing"
        assert (series.out_dir / "checkpoints" / "evaluation" / "cascade.csv").is_file()
        assert "| stage-wise | + unsharp " in text and "| end-to-end | + unsharp " in text  # the fine-tuning section
        assert sorted(p.name for p in (series.out_dir / "checkpoints" / "cascade" / "weights").iterdir()) == ["dncnn.pt", "edsr.pt", "unet.pt"]


def test_download_dataset_uses_an_archive_on_drive_and_reports_an_optional_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from test_data_download import COUNTS_ENV, REALBLUR_TGZ

    closed = "http://127.0.0.1:9"  # a closed local port: every download fails at once, nothing leaves the machine
    for name, value in {**COUNTS_ENV, "REALBLUR_URLS": f"{closed}/R.tar.gz", "GOPRO_URLS": f"{closed}/G.zip", "DOWNLOAD_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    drive = tmp_path / "drive"
    assert not notebooks.download_dataset("realblur", tmp_path / "vm1", drive, keep=False, required=False)
    output = capsys.readouterr().out
    assert output.splitlines()[-1].startswith("realblur was not installed") and "--archive" in output
    assert not drive.exists()  # keep=False: nothing is kept, and no empty folder is left on Drive
    drive.mkdir()
    (drive / "RealBlur.tar.gz").write_bytes(REALBLUR_TGZ)  # fetched by hand and put on Drive
    assert notebooks.download_dataset("realblur", tmp_path / "vm2", drive, keep=False)
    assert "instead of downloading" in capsys.readouterr().out and (tmp_path / "vm2" / "RealBlur" / ".complete").is_file()
    with pytest.raises(RuntimeError, match="gopro was not installed"):
        notebooks.download_dataset("gopro", tmp_path / "vm3", None)
