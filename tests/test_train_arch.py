"""``python -m helpers train MODEL --arch KEY=VALUE,...``: the network's arguments reach the recipe, the run and its checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from helpers import recipes
from helpers.checkpoint import export_weights, load_checkpoint, load_model
from helpers.commands import build_parser, main
from helpers.commands.train import arch_arguments, config_from_args
from helpers.models import UNet
from tests.test_data import write_photos

GATED = "block=nafnet,width=8,enc_blocks=1-2,middle_blocks=1,dec_blocks=1-1"
GATED_KWARGS = {"image_channels": 3, "block": "nafnet", "width": 8, "enc_blocks": (1, 2), "middle_blocks": 1, "dec_blocks": (1, 1)}


def test_arch_arguments_parse_numbers_dash_lists_and_names() -> None:
    assert arch_arguments(GATED) == {"block": "nafnet", "width": 8, "enc_blocks": [1, 2], "middle_blocks": 1, "dec_blocks": [1, 1]}
    assert arch_arguments("base_channels=16, depth=3") == {"base_channels": 16, "depth": 3}
    for bad in ("", "width", "=8", "block=nafnet,width"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
            arch_arguments(bad)


def test_the_flag_lands_in_the_recipe_and_builds_the_network(tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "unet", "--arch", GATED, "--out", str(tmp_path)])
    config = config_from_args(args)
    assert config["arch"] == arch_arguments(GATED)
    assert recipes.build_model("unet", config).arch == {"name": "unet", "kwargs": GATED_KWARGS}
    assert "arch" not in config_from_args(build_parser().parse_args(["train", "unet", "--out", str(tmp_path)]))


def photo_run(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "unet", "--data", f"photos:{folder}", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "2", "--patch", "32", "--val-patch", "24", "--val-items", "2", "--cascade-weights", "none", *extra]


def test_a_gated_run_records_its_block_resumes_and_fine_tunes(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "photos", 6)
    out = tmp_path / "run"
    assert main(photo_run(folder, out, "--arch", GATED)) == 0
    state = load_checkpoint(out / "last.pt")
    assert state["arch"] == {"name": "unet", "kwargs": GATED_KWARGS} and state["config"]["arch"] == state["arch"]
    assert load_model(out / "best.pt").block == "nafnet"
    assert main([*photo_run(folder, out, "--arch", GATED, "--resume"), "--epochs", "2"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    # --init with the same --arch is accepted (the flag's arguments describe the file's network), another is refused
    assert main(photo_run(folder, tmp_path / "tuned", "--arch", GATED, "--init", str(out / "best.pt"))) == 0
    assert main(photo_run(folder, tmp_path / "other", "--arch", "block=nafnet,width=16,enc_blocks=1-2,dec_blocks=1-1",
                          "--init", str(out / "best.pt"))) == 2


@pytest.mark.parametrize(("arch", "message"), [
    ("block=gated", "UNet block: expected one of plain, nafnet, received 'gated'"),
    ("block=nafnet,widht=8", "unet: unknown argument 'widht'"),
    ("block=nafnet,enc_blocks=1-1,dec_blocks=1", "as many in dec_blocks as in enc_blocks"),
])
def test_a_bad_arch_is_a_one_line_setup_error(tmp_path: Path, capsys, arch: str, message: str) -> None:
    folder = write_photos(tmp_path / "photos", 6)
    assert main(photo_run(folder, tmp_path / "run", "--arch", arch)) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_plain_run_recorded_before_the_block_argument_resumes(tmp_path: Path) -> None:
    """A checkpoint whose UNet arguments lack ``block`` (every run before it existed) continues as block="plain"."""
    folder = write_photos(tmp_path / "photos", 6)
    out = tmp_path / "run"
    assert main(photo_run(folder, out, "--arch", "base_channels=4,depth=2")) == 0
    state = load_checkpoint(out / "last.pt")
    for record in (state["arch"], state["config"]["arch"]):
        del record["kwargs"]["block"]
    torch.save(state, out / "last.pt")
    assert main([*photo_run(folder, out, "--arch", "base_channels=4,depth=2", "--resume"), "--epochs", "2"]) == 0
    assert load_checkpoint(out / "last.pt")["arch"]["kwargs"]["block"] == "plain"
    old = export_weights(UNet(base_channels=4, depth=2), tmp_path / "old.pt")
    assert load_model(old).arch == {"name": "unet", "kwargs": {"base_channels": 4, "depth": 2, "image_channels": 3, "block": "plain"}}
