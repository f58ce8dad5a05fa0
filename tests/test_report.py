"""helpers.report: evaluations written as files that decode, and the ``evaluate`` command end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from helpers.checkpoint import export_weights
from helpers.commands import main
from helpers.data import pairs_for
from helpers.io import read_image, write_image
from helpers.report import save_evaluation

from test_evaluate import CASCADE_ROWS, cascade, frame_pairs, photo, small_models  # noqa: F401 (fixtures)


def test_save_evaluation_writes_decodable_files(cascade, tmp_path):
    _, evaluation = cascade
    paths = save_evaluation(evaluation, tmp_path, "cascade", "test run")
    with open(paths["table_csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows] == CASCADE_ROWS
    assert float(rows[0]["psnr"]) == pytest.approx(evaluation.table[0]["psnr"])
    with open(paths["per_image_csv"]) as handle:
        assert len(list(csv.DictReader(handle))) == len(evaluation.per_image)
    markdown = paths["table_md"].read_text()
    assert markdown.startswith("## test run") and all(f"| {method}" in markdown for method in CASCADE_ROWS)
    grid = read_image(paths["grid_png"])
    assert grid.ndim == 3 and min(grid.shape[:2]) > 100
    assert not list(tmp_path.glob("*.partial*"))



@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    for name, model in small_models().items():
        export_weights(model, folder / f"{name}.pt")
    return folder


def test_evaluate_cli_cascade_on_sample_set(sample_cache, weights_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["evaluate", "--data", "sample", "--weights", str(weights_dir), "--out", str(out), "--limit", "1",
                 "--device", "cpu", "--y-channel"])
    assert code == 0
    printed = capsys.readouterr().out
    assert all(method in printed for method in CASCADE_ROWS) and "PSNR-Y" in printed
    with open(out / "cascade_per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    first = pairs_for("sample", "test")[0].name
    assert {row["image"] for row in rows} == {first} and len(rows) == len(CASCADE_ROWS)
    assert read_image(out / "cascade_grid.png").ndim == 3 and (out / "cascade.md").is_file()


@pytest.mark.parametrize("task, model", [("denoise", "dncnn"), ("sr", "edsr"), ("deblur", "unet")])
def test_evaluate_cli_single_tasks(task, model, weights_dir, photo, tmp_path, capsys):
    images = tmp_path / "images"
    write_image(images / "a.png", photo)
    write_image(images / "b.png", photo[::-1].copy())
    out = tmp_path / "out"
    code = main(["evaluate", "--task", task, "--data", f"folder:{images}", "--weights", str(weights_dir / f"{model}.pt"),
                 "--out", str(out), "--device", "cpu"])
    assert code == 0
    with open(out / f"{task}.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 2 and rows[0]["method"] in capsys.readouterr().out
    assert read_image(out / f"{task}_grid.png").ndim == 3


def test_evaluate_cli_prints_the_noise_protocol(weights_dir, photo, tmp_path, capsys):
    write_image(tmp_path / "images" / "a.png", photo)
    for protocol in ("clipped", "paper"):
        code = main(["evaluate", "--task", "denoise", "--data", str(tmp_path / "images"), "--weights",
                     str(weights_dir / "dncnn.pt"), "--out", str(tmp_path / protocol), "--noise-protocol", protocol])
        printed = capsys.readouterr().out
        assert code == 0 and f"{protocol} noise protocol" in printed and f"| noisy input (sigma 25, {protocol})" in printed
        assert f"{protocol} noise protocol" in (tmp_path / protocol / "denoise.md").read_text()


def test_evaluate_cli_names_missing_weights(tmp_path, photo, capsys):
    write_image(tmp_path / "images" / "a.png", photo)
    assert main(["evaluate", "--task", "denoise", "--data", str(tmp_path / "images"), "--weights", str(tmp_path), "--device", "cpu"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and str(tmp_path / "dncnn.pt") in errors[0]
