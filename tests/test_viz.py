"""helpers.viz: figures have the expected axes, sizes are shown honestly, saving is atomic."""

from __future__ import annotations

import re

import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio

from helpers.evaluate import Evaluation
from helpers.io import read_image
from helpers.viz import (
    compare_stages, evaluation_grid, image_grid, interactive_compare, plot_history, plot_per_image, strength_blend,
)


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    """A 128x72 "input", a 256x144 "output" and target (16:9, like 640x360 and 1280x720)."""
    target = np.ascontiguousarray(skimage.data.astronaut()[100:244, 100:356])
    return {"input": np.ascontiguousarray(target[::2, ::2]), "output": np.clip(target.astype(int) + 6, 0, 255).astype(np.uint8), "target": target}


def test_plot_history_single_epoch_with_dashed_input_baseline():
    figure = plot_history({"train_loss": [0.1], "val_loss": [0.2], "val_psnr": [25.0], "input_psnr": 24.0})
    loss_axis, psnr_axis = figure.axes
    assert len(loss_axis.lines) == 2 and loss_axis.lines[0].get_marker() == "o"
    dashed = [line for line in psnr_axis.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [24.0, 24.0]


def test_plot_history_groups_metrics_and_respects_keys():
    history = {"epoch": [1, 2, 3], "train_loss": [3, 2, 1], "val_psnr": [20, 21, 22], "val_ssim": [0.5, 0.6, 0.7],
               "input_psnr": [19.0, 19.0, 19.0], "lr": [1, 1, 1], "skipped_steps": [0, 0, 0]}
    figure = plot_history(history)
    assert len(figure.axes) == 3  # loss, psnr, ssim; lr and skipped_steps are not drawn by default
    assert [list(line.get_ydata()) for line in figure.axes[1].lines if line.get_linestyle() == "--"] == [[19.0, 19.0]]
    only = plot_history(history, keys=["train_loss"])
    assert len(only.axes) == 1 and list(only.axes[0].lines[0].get_xdata()) == [1, 2, 3]
    with pytest.raises(ValueError, match="no curves"):
        plot_history({"note": "text"})


def test_image_grid_keeps_aspect_and_labels_real_sizes(frames, tmp_path):
    portrait = np.ascontiguousarray(frames["target"][:, :81])  # 81x144
    figure = image_grid([{"input": frames["input"], "target": frames["target"]}, [portrait]], save=tmp_path / "grid.png")
    # a row of one size needs no size labels; the portrait row is taller than the landscape one
    assert len(figure.axes) == 4  # 2 rows x 2 columns, one blank
    small, large, tall, blank = figure.axes
    assert small.get_title() == "input\n128x72" and large.get_title() == "target\n256x144"
    for axis, (height, width) in ((small, (72, 128)), (large, (144, 256)), (tall, (144, 81))):
        left, right, bottom, top = axis.images[0].get_extent()
        assert (right - left) / (bottom - top) == pytest.approx(width / height)
    assert small.images[0].get_extent() == pytest.approx(large.images[0].get_extent())  # shown at a common size
    assert not blank.images and not blank.axison
    assert tall.get_title() == "" and tall.get_position().height > small.get_position().height
    assert read_image(tmp_path / "grid.png").shape[2] == 3 and not list(tmp_path.glob("*.partial*"))


def test_compare_stages_titles_carry_psnr(frames):
    figure = compare_stages({"input": frames["input"], "output": frames["output"]}, frames["target"])
    assert len(figure.axes) == 3
    title = figure.axes[1].get_title()
    value = float(re.search(r"PSNR ([\d.]+) dB", title).group(1))
    assert value == pytest.approx(peak_signal_noise_ratio(frames["target"], frames["output"], data_range=255), abs=0.01)
    assert "bicubic up" in figure.axes[0].get_title() and "SSIM" in title


def test_plot_per_image_draws_each_methods_sorted_gain_over_the_baseline():
    psnr_values = {"a": (20.0, 21.0, 19.0), "b": (30.0, 29.5, 30.5), "c": (25.0, 27.0, 25.2)}  # bicubic, x, y
    rows = [{"image": image, "method": method, "psnr": value}
            for image, values in psnr_values.items() for method, value in zip(["bicubic", "x", "y"], values)]
    figure = plot_per_image(rows)
    axis = figure.axes[0]
    series = [line for line in axis.lines if line.get_label() in ("x", "y")]
    assert [line.get_label() for line in series] == ["x", "y"]
    assert list(series[0].get_ydata()) == [-0.5, 1.0, 2.0] and list(series[1].get_ydata()) == pytest.approx([-1.0, 0.2, 0.5])
    assert "gain over bicubic" in axis.get_ylabel()
    with pytest.raises(ValueError, match="baseline 'z'"):
        plot_per_image(rows, baseline="z")


def test_evaluation_grid_has_full_and_crop_rows(frames):
    examples = [(name, {"bicubic": frames["output"], "model": frames["output"], "target": frames["target"]}) for name in ("a", "b")]
    per_image = [{"image": name, "method": method, "psnr": 30.0} for name in ("a", "b") for method in ("bicubic", "model")]
    figure = evaluation_grid(Evaluation([], per_image, examples))
    assert len(figure.axes) == 4 * 3
    assert figure.axes[0].get_title() == "bicubic\n30.00 dB" and figure.axes[3].get_title() == "centre crop"
    assert figure.axes[3].images[0].get_array().shape[:2] == (36, 64)


def test_interactive_compare_switches_image_and_stage(frames):
    viewer = interactive_compare({"one": frames, "two": {"input": frames["input"], "target": frames["target"]}})
    (picker, stage), caption, view = viewer.children[0].children, viewer.children[1], viewer.children[2]
    assert list(picker.options) == ["one", "two"] and list(stage.options) == ["input", "output", "target"]
    assert "128x72" in caption.value and "PSNR" in caption.value and bytes(view.value).startswith(b"\x89PNG")
    first = bytes(view.value)
    stage.value = "output"
    assert "256x144" in caption.value and bytes(view.value) != first
    picker.value = "two"
    assert list(stage.options) == ["input", "target"] and stage.value == "input"


def test_the_strength_slider_shows_the_restored_image_as_restore_strength_writes_it():
    """The blend the viewer shows at strength 0.4 is what Restorer(strength=0.4) gives (to 1/255), from the
    restored image and the input alone."""
    from helpers.pipeline import Restorer
    from test_pipeline import max_difference, photo, small_networks

    networks, image = small_networks(), photo(40, 56)
    restored = Restorer(networks, device="cpu", fp32=True).restore(image)
    expected = Restorer(networks, device="cpu", fp32=True, strength=0.4).restore(image)
    assert max_difference(strength_blend(image, restored, 0.4), expected) <= 1
    assert max_difference(restored, expected) > 4  # the blend moves the picture: the check can fail
    viewer = interactive_compare({"photo": {"input": image, "restored": restored}}, strength_slider=True)
    (_, stage, strength), caption, view = viewer.children[0].children, viewer.children[1], viewer.children[2]
    stage.value = "restored"
    full = bytes(view.value)
    strength.value = 0.4
    assert "at strength 0.40" in caption.value and bytes(view.value) != full
    assert len(interactive_compare({"photo": {"input": image, "restored": restored}}).children[0].children) == 2
