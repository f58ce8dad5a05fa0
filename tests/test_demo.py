"""helpers.demo: `python -m helpers demo` end to end with small random weights, and without weights."""

from __future__ import annotations

import csv

import torch

from helpers.checkpoint import export_weights
from helpers.commands import main
from helpers.evaluate import STAGE_LABELS, UNSHARP_BASELINE
from helpers.io import list_images, read_image
from helpers.models import EDSR, UNet, DnCNN


def test_demo_restores_the_sample_set(sample_cache, tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "weights"
    for name, model in {"dncnn": DnCNN(depth=5, channels=16), "unet": UNet(base_channels=8, depth=2),
                        "edsr": EDSR(num_blocks=2, channels=16)}.items():
        export_weights(model, weights / f"{name}.pt")
    out = tmp_path / "demo"
    assert main(["demo", "--weights", str(weights), "--out", str(out), "--device", "cpu"]) == 0
    restored = list_images(out / "restored")
    assert len(restored) == 4
    assert all(sorted(read_image(path).shape[:2]) == [720, 1280] for path in restored)
    with open(out / "demo.csv") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == [*STAGE_LABELS.values(), UNSHARP_BASELINE]
    assert read_image(out / "demo_grid.png").ndim == 3
    printed = capsys.readouterr().out
    assert (out / "demo.md").read_text().split("\n\n", 1)[1].strip() in printed


def test_demo_without_weights_explains_how_to_get_them(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--weights", str(tmp_path / "empty"), "--out", str(out)]) == 1
    message = capsys.readouterr().err
    assert "dncnn.pt, unet.pt, edsr.pt" in message and "--weights DIR" in message
    assert not out.exists()
