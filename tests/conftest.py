"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from torch import nn

from helpers.degrade import motion_blur, resize
from helpers.io import uint8_image, write_image


def make_gopro_tree(
    root: Path, sequences: dict[str, int] | None = None, frames: int = 2, size: tuple[int, int] = (128, 72)
) -> Path:
    """Write a tiny GOPRO_Large-shaped tree: root/<split>/<sequence>/{sharp,blur}/NNNNNN.png.

    ``sequences`` maps split -> number of sequences; frames are ``size`` (width, height) crops of
    scikit-image's astronaut, the blurry ones made with ``motion_blur``.
    """
    sequences = sequences or {"train": 4, "test": 1}
    photo = skimage.data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    width, height = size
    for split, count in sequences.items():
        for number in range(count):
            for frame in range(frames):
                top, left = 20 * number + 3 * frame, 10 * number + 5 * frame
                crop = resize(photo[top : top + 2 * height, left : left + 2 * width], width, height)
                sequence = root / split / f"seq{number:02d}"
                write_image(sequence / "sharp" / f"{frame:06d}.png", uint8_image(crop))
                blurred = motion_blur(crop, rng, max_shift=6)
                write_image(sequence / "blur" / f"{frame:06d}.png", uint8_image(blurred))
    return root


@pytest.fixture
def gopro_root(tmp_path: Path) -> Path:
    """A fresh tiny GOPRO tree (4 train sequences, 1 test sequence, 2 frames each, 128x72)."""
    return make_gopro_tree(tmp_path / "GOPRO_Large")


def without_identity_start(network: nn.Module) -> nn.Module:
    """Re-randomise the zero-initialised last layers (PyTorch's default init), so an untrained network
    is not the identity (DnCNN, UNet) or bicubic (EDSR) and tests of tiling, precision or layout
    compare outputs that really depend on the weights."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d) and not module.weight.any():
            module.reset_parameters()
    return network


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory):
    """The sample set is built once per test session (shared path) instead of in the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMAGE_REPAIR_CACHE", str(tmp_path_factory.getbasetemp() / "image_repair_cache"))
        yield


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: on a shared two-core machine, OpenMP threads spinning against other
    processes made training steps many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torch_loads(monkeypatch) -> list[str]:
    """Names of the files ``torch.load`` reads during the test, in order: to show that each file is read once
    (structure-only reads to the meta device, which read no tensor data, are not counted)."""
    names: list[str] = []
    real_load = torch.load

    def counting_load(file, *args, **kwargs):
        if kwargs.get("map_location") != "meta":
            names.append(Path(file).name)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    return names
