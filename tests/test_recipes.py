"""helpers.recipes: one config dict builds a stage's datasets and network, from a notebook or from the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import recipes
from helpers.commands import build_parser
from helpers.commands.train import config_from_args
from helpers.models import build_model
from helpers.training import fit
from test_data import write_photos, write_realblur

pytestmark = pytest.mark.usefixtures("one_torch_thread", "sample_cache")  # the sample set and frame caches: one per session


def cli_config(*args: str) -> dict:
    return config_from_args(build_parser().parse_args(["train", *args, "--out", "unused"]))


def items(dataset, indices=(0, 1, 5)) -> list:
    flat = []
    for index in indices:
        for value in dataset[index]:
            flat += list(value.values()) if isinstance(value, dict) else [value]
    return flat


def assert_same_datasets(first, second) -> None:
    for a, b in zip(first, second):
        assert type(a) is type(b) and len(a) == len(b)
        settings = ("patch_size", "augment", "seed", "samples_per_frame", "colour_augment", "sigma", "clean_fraction",
                    "blurry_fraction", "synthetic_blur", "extra_ratio")
        assert {name: getattr(a, name, None) for name in settings} == {name: getattr(b, name, None) for name in settings}
        assert all(torch.equal(x, y) for x, y in zip(items(a), items(b)))


# What notebooks 02-05 write (tiny sizes), and the command line of the same run.
NOTEBOOK_AND_CLI = {
    "dncnn": ({"seed": 0, "batch_size": 4, "steps_per_epoch": 2,
               "data": {"source": "sample", "patch": 32, "sigma": (0.0, 55.0), "val_sigma": 25.0, "clean_fraction": 0.1,
                        "blurry_fraction": 0.3, "samples_per_frame": 3, "val_patch": 48}},
              ["dncnn", "--data", "sample", "--batch-size", "4", "--steps-per-epoch", "2", "--patch", "32", "--sigma", "0,55",
               "--val-sigma", "25", "--clean-fraction", "0.1", "--blurry-fraction", "0.3", "--samples-per-frame", "3",
               "--val-patch", "48"]),
    "unet": ({"seed": 1, "batch_size": 2, "data": {"source": "sample", "patch": 48, "samples_per_frame": 2, "val_patch": 48,
                                                   "synthetic_blur": 0.5, "colour_augment": 0.2}},
             ["unet", "--seed", "1", "--batch-size", "2", "--patch", "48", "--samples-per-frame", "2", "--val-patch", "48",
              "--synthetic-blur", "0.5", "--colour-augment", "0.2"]),
    "edsr": ({"seed": 0, "batch_size": 2, "data": {"source": "sample", "patch": 24, "samples_per_frame": 2, "val_patch": 32,
                                                   "val_crops": 2}},
             ["edsr", "--batch-size", "2", "--patch", "24", "--samples-per-frame", "2", "--val-patch", "32", "--val-crops", "2"]),
    "cascade": ({"seed": 0, "batch_size": 2, "data": {"source": "sample", "patch": 32, "val_patch": 32, "sigma": (0.0, 55.0),
                                                      "clean_fraction": 0.2, "samples_per_frame": 2}},
                ["cascade", "--batch-size", "2", "--patch", "32", "--val-patch", "32", "--clean-fraction", "0.2",
                 "--samples-per-frame", "2"]),
}


@pytest.mark.parametrize("stage", list(NOTEBOOK_AND_CLI))
def test_a_notebook_dict_and_the_command_line_build_equal_datasets(stage):
    notebook, command_line = NOTEBOOK_AND_CLI[stage]
    from_notebook = recipes.build_datasets(stage, notebook)
    from_cli = recipes.build_datasets(stage, cli_config(*command_line))
    assert_same_datasets(from_notebook, from_cli)
    train, val = from_notebook
    assert train.augment and not val.augment and val.samples_per_frame == notebook["data"].get("val_crops", 4)
    if stage == "dncnn":  # the training-only options stay out of validation; validation has its own noise level
        assert (train.clean_fraction, val.clean_fraction, train.sigma, val.sigma) == (0.1, 0.0, (0.0, 55.0), 25.0)


def test_photos_source_from_a_notebook_dict_equals_the_command_line(tmp_path):
    folder = write_photos(tmp_path / "photos", 8)
    kernels = tmp_path / "kernels.npz"
    np.savez(kernels, a=np.full((5, 5), 1 / 25), b=np.eye(7) / 7)
    notebook = {"seed": 3, "batch_size": 2, "steps_per_epoch": 2,
                "data": {"source": f"photos:{folder}", "patch": 32, "val_patch": 24, "val_items": 3, "kernels": str(kernels),
                         "sharp_fraction": 0.25, "min_scale": 0.6}}
    command_line = ["unet", "--data", f"photos:{folder}", "--seed", "3", "--batch-size", "2", "--steps-per-epoch", "2",
                    "--patch", "32", "--val-patch", "24", "--val-items", "3", "--kernels", str(kernels),
                    "--sharp-fraction", "0.25", "--min-scale", "0.6"]
    from_notebook, from_cli = recipes.build_datasets("unet", notebook), recipes.build_datasets("unet", cli_config(*command_line))
    for a, b in zip(from_notebook, from_cli):
        assert type(a) is type(b) and len(a) == len(b)
        assert all(torch.equal(x, y) for x, y in zip(items(a, (0, 1)), items(b, (0, 1))))
    train, val = from_notebook
    assert len(train) == 2 * 2 and len(val) == 3  # steps x batch; the held-out patches
    assert (train.degradations.sharp_fraction, val.degradations.sharp_fraction) == (0.25, 0.0)
    assert len(train.degradations.kernels) == 2


def test_realblur_extra_pairs_reach_the_unet_from_both_doors(tmp_path):
    realblur = write_realblur(tmp_path / "RealBlur")
    notebook = {"seed": 0, "data": {"source": "sample", "patch": 32, "extra": f"realblur:{realblur}", "extra_ratio": 0.3}}
    train, _ = recipes.build_datasets("unet", notebook)
    assert train.extra_ratio == 0.3 and len(train.extra) == 4  # every RealBlur training pair, none held out
    from_cli, _ = recipes.build_datasets("unet", cli_config("unet", "--patch", "32", "--extra", f"realblur:{realblur}",
                                                            "--extra-ratio", "0.3"))
    assert len(from_cli.extra) == 4 and all(torch.equal(x, y) for x, y in zip(items(train), items(from_cli)))


def test_a_recipe_refuses_missing_extra_data_and_misspelt_settings(tmp_path):
    missing = {"data": {"source": "sample", "extra": f"realblur:{tmp_path / 'nowhere'}", "extra_ratio": 0.3}}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        recipes.build_datasets("unet", missing)
    with pytest.raises(ValueError, match="extra_ratio 0.3 needs an extra source"):
        recipes.build_datasets("unet", {"data": {"source": "sample", "extra_ratio": 0.3}})
    with pytest.raises(ValueError, match="unknown data setting 'patch_size'"):
        recipes.build_datasets("dncnn", {"data": {"source": "sample", "patch_size": 32}})
    with pytest.raises(ValueError, match="unknown stage"):
        recipes.build_datasets("sharpen", {"data": {"source": "sample"}})


def test_the_command_line_records_the_whole_recipe():
    config = cli_config("unet", "--patch", "48", "--extra-ratio", "0")
    assert set(config["data"]) == set(recipes.DATA_DEFAULTS)  # every setting, defaults resolved
    assert config["data"]["patch"] == 48 and config["data"]["val_fraction"] == 0.2 and config["lr"] == 3e-4
    assert cli_config("edsr")["data"]["patch"] == recipes.STAGE_DEFAULTS["edsr"].patch


def test_the_model_comes_from_the_config_and_fit_refuses_another(tmp_path):
    config = {"seed": 4, "arch": {"depth": 3, "channels": 8}}
    model = recipes.build_model("dncnn", config)
    torch.manual_seed(4)
    expected = build_model("dncnn", depth=3, channels=8)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))
    train, val = recipes.build_datasets("dncnn", {"data": {"source": "sample", "patch": 24, "val_patch": 24}})
    with pytest.raises(ValueError, match="does not describe the model"):
        fit(build_model("dncnn", depth=4, channels=8), train, val, config={**config, "epochs": 1}, checkpoint_dir=tmp_path)
    assert not (tmp_path / "last.pt").exists()
