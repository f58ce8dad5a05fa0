"""Plots for notebooks and the CLI: training curves, image grids, stage comparisons, per-image metrics.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot state: safe under the Agg
backend, no figure pile-up in loops, shown once in notebooks) and returns it; ``save=PATH`` also
writes it atomically (format from the suffix). Images are RGB uint8 arrays. Images of different
sizes in one grid (640x360 inputs beside 1280x720 outputs) are shown in equal cells at a common
display size with their aspect ratio kept, and their titles then state each image's real size.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .evaluate import TARGET, Evaluation, to_target_size
from .io import image_to_tensor, tensor_to_image
from .safe_writes import atomic_path
from .metrics import psnr, ssim

__all__ = [
    "save_figure",
    "strength_blend",
    "plot_history",
    "image_grid",
    "compare_stages",
    "evaluation_grid",
    "plot_per_image",
    "interactive_compare",
]

HISTORY_GROUPS = ("loss", "psnr", "ssim")
BASELINE_PREFIXES = ("input_", "baseline_")


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``figure`` to ``path`` through a temporary file (the suffix picks the format)."""
    path = Path(path)
    with atomic_path(path) as temp:
        figure.savefig(temp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return path


def _finish(figure: Figure, save: str | os.PathLike | None) -> Figure:
    if save is not None:
        save_figure(figure, save)
    return figure


# ----------------------------------------------------------------------------- training curves


def _metric_of(key: str) -> str:
    """'train_loss' -> 'loss', 'val_psnr' -> 'psnr', 'input_psnr' -> 'psnr'."""
    return key.rsplit("_", 1)[-1]


def plot_history(
    history: Mapping[str, Any], keys: Sequence[str] | None = None, save: str | os.PathLike | None = None
) -> Figure:
    """Training curves: one axis per metric (loss, PSNR, SSIM), train and val curves on the same axis.

    ``history`` maps names to per-epoch lists ("train_loss", "val_loss", "val_psnr", ...); an
    optional "epoch" list gives the x values. Keys starting with "input_" or "baseline_" (e.g.
    "input_psnr", a number or a per-epoch list) are drawn dashed as the baseline on their metric's axis.
    ``keys`` limits the curves drawn (default: every list whose name ends in loss, psnr or ssim).
    A single epoch is drawn as points.
    """
    numeric = {key: value for key, value in history.items() if key != "epoch" and _is_numbers(value)}
    baselines = {key: value for key, value in numeric.items() if key.startswith(BASELINE_PREFIXES)}
    curves = {
        key: list(value)
        for key, value in numeric.items()
        if key not in baselines and not np.isscalar(value)
        and (key in keys if keys is not None else _metric_of(key) in HISTORY_GROUPS)
    }
    if not curves:
        raise ValueError(f"plot_history: no curves to draw among keys {sorted(history)}")
    groups = list(dict.fromkeys(_metric_of(key) for key in curves))
    figure = Figure(figsize=(5.0 * len(groups), 3.8), layout="constrained")
    axes = figure.subplots(1, len(groups), squeeze=False)[0]
    def epochs(count: int) -> list:
        return list(history.get("epoch") or range(1, count + 1))[:count]

    for axis, group in zip(axes, groups):
        for key, values in curves.items():
            if _metric_of(key) == group:
                axis.plot(epochs(len(values)), values, marker="o", label=key)
        for key, value in baselines.items():
            if _metric_of(key) != group:
                continue
            values = np.atleast_1d(np.asarray(value, dtype=float))
            if np.ptp(values) == 0:  # a constant baseline (the usual input PSNR), visible even for one epoch
                axis.axhline(values[0], linestyle="--", color="grey", label=f"{key} ({values[0]:.2f})")
            else:
                axis.plot(epochs(len(values)), values, linestyle="--", color="grey", label=key)
        axis.set_xlabel("epoch")
        axis.set_ylabel({"psnr": "PSNR (dB)", "ssim": "SSIM"}.get(group, group))
        axis.grid(alpha=0.3)
        axis.legend()
    return _finish(figure, save)


def _is_numbers(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0 and all(
        isinstance(item, (int, float, np.floating, np.integer)) for item in value
    )


# ----------------------------------------------------------------------------- image grids


def image_grid(
    rows: Sequence[Mapping[str, np.ndarray] | Sequence[np.ndarray]],
    titles: Sequence[Sequence[str]] | None = None,
    cell_width: float = 3.2,
    suptitle: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """A grid of RGB uint8 images, one list or {title: image} dict per row; ``titles`` overrides the titles.

    All cells of a row have the display size of the row's largest image; smaller images are enlarged
    to fit it with their aspect ratio kept (letterboxed if the aspect differs), and when a row mixes
    sizes its titles end with each image's real size. Rows may differ in length (unused cells are blank).
    """
    images = [list(row.values()) if isinstance(row, Mapping) else list(row) for row in rows]
    if not images or not any(images):
        raise ValueError("image_grid: no images")
    if titles is None:
        titles = [list(row) if isinstance(row, Mapping) else [""] * len(row) for row in rows]
    for image in (image for row in images for image in row):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image_grid: expected RGB uint8 images (H, W, 3), received {image.dtype} {image.shape}")
    # each row's cells take the display size of its largest image, so a portrait row is taller
    boxes = [max((image.shape[:2] for image in row), key=lambda size: size[0] * size[1], default=(1, 1)) for row in images]
    heights = [cell_width * box_height / box_width + 0.5 for box_height, box_width in boxes]
    n_rows, n_cols = len(images), max(len(row) for row in images)
    figure = Figure(figsize=(cell_width * n_cols, sum(heights)), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={"height_ratios": heights})
    for row_index, row in enumerate(images):
        box_height, box_width = boxes[row_index]
        show_sizes = len({image.shape[:2] for image in row}) > 1
        for column, axis in enumerate(axes[row_index]):
            axis.set_axis_off()
            if column >= len(row):
                continue
            image = row[column]
            height, width = image.shape[:2]
            fit = min(box_width / width, box_height / height)
            left, top = (box_width - width * fit) / 2, (box_height - height * fit) / 2
            axis.imshow(image, extent=(left, left + width * fit, top + height * fit, top))
            axis.set_xlim(0, box_width)
            axis.set_ylim(box_height, 0)
            title = titles[row_index][column] if column < len(titles[row_index]) else ""
            axis.set_title(title + (f"\n{width}x{height}" if show_sizes else ""), fontsize=9)
    if suptitle:
        figure.suptitle(suptitle)
    return _finish(figure, save)


def _quality(image: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of an image (bicubic-upscaled to the target's size if smaller) against the target."""
    measured = image_to_tensor(to_target_size(image, target))
    reference = image_to_tensor(target)
    return float(psnr(measured, reference)), float(ssim(measured, reference))


def compare_stages(
    stages: Mapping[str, np.ndarray], target: np.ndarray | None = None, save: str | os.PathLike | None = None
) -> Figure:
    """One row: each stage's output (e.g. ``Restorer.restore_stages``) and the target, with PSNR/SSIM in the
    titles. Stages smaller than the target are measured after bicubic upscaling (as the ablation does)."""
    titles = []
    for name, image in stages.items():
        if target is None:
            titles.append(name)
            continue
        value_psnr, value_ssim = _quality(image, target)
        upscaled = " (bicubic up)" if image.shape != target.shape else ""
        titles.append(f"{name}\nPSNR {value_psnr:.2f} dB, SSIM {value_ssim:.3f}{upscaled}")
    images = list(stages.values()) + ([target] if target is not None else [])
    return image_grid([images], [titles + ([TARGET] if target is not None else [])], save=save)


def _centre_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    height, width = image.shape[:2]
    crop_height, crop_width = max(1, int(height * fraction)), max(1, int(width * fraction))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return image[top : top + crop_height, left : left + crop_width]


def evaluation_grid(
    evaluation: Evaluation, crop: float | None = 0.25, save: str | os.PathLike | None = None
) -> Figure:
    """Before/after grid of an ``Evaluation``'s examples: every method and the target, PSNR in the titles;
    with ``crop``, each example gets a second row of centre crops (that fraction of each side) for detail."""
    scores = {(row["image"], row["method"]): row["psnr"] for row in evaluation.per_image}
    rows, titles = [], []
    for name, images in evaluation.examples:
        labels = [
            f"{name}: target" if method == TARGET else f"{method}\n{scores[name, method]:.2f} dB" for method in images
        ]
        rows.append(list(images.values()))
        titles.append(labels)
        if crop:
            rows.append([_centre_crop(image, crop) for image in images.values()])
            titles.append(["centre crop"] * len(images))
    if not rows:
        raise ValueError("evaluation_grid: the evaluation kept no example images (keep_examples=0)")
    return image_grid(rows, titles, save=save)


# ----------------------------------------------------------------------------- per-image metrics


def plot_per_image(
    per_image: Sequence[Mapping[str, Any]],
    metric: str = "psnr",
    methods: Sequence[str] | None = None,
    baseline: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Each image's gain in ``metric`` over ``baseline``, sorted, one series per method (``Evaluation.per_image`` rows).

    The images are separate, so there is no order to draw along: each method's gains are sorted from worst
    to best, which shows at a glance on how many images it helps (above zero) or hurts (below), and by how
    much. ``baseline`` defaults to the first method (the bicubic row of an ablation); ``methods`` to the others.
    """
    if not per_image:
        raise ValueError("plot_per_image: no results")
    names = list(dict.fromkeys(row["method"] for row in per_image))
    baseline = baseline or names[0]
    methods = [method for method in (methods or names) if method != baseline]
    values = {(row["image"], row["method"]): row[metric] for row in per_image}
    images = [image for image in dict.fromkeys(row["image"] for row in per_image) if (image, baseline) in values]
    if not images or not methods:
        raise ValueError(f"plot_per_image: need the baseline {baseline!r} and at least one other method on the same images")
    figure = Figure(figsize=(max(6.0, 0.12 * len(images) + 4.0), 4.0), layout="constrained")
    axis = figure.subplots()
    for method in methods:
        gains = sorted(values[image, method] - values[image, baseline] for image in images if (image, method) in values)
        axis.plot(np.arange(1, len(gains) + 1), gains, marker="o", markersize=3, label=method)
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    label = {"psnr": "PSNR", "ssim": "SSIM", "mse": "MSE"}.get(metric, metric)
    axis.set_xlabel(f"images, sorted by gain (each method on its own; {len(images)} images)")
    axis.set_ylabel(f"{label} gain over {baseline}" + (" (dB)" if metric == "psnr" else ""))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _finish(figure, save)


# ----------------------------------------------------------------------------- notebooks


def _png_bytes(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 image as PNG bytes for an ipywidgets.Image (matplotlib's encoder, no file)."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, image, format="png")
    return buffer.getvalue()


def strength_blend(original: np.ndarray, restored: np.ndarray, strength: float) -> np.ndarray:
    """``restored`` at ``strength`` (uint8): blended with ``original`` upscaled to its size by bicubic, as
    ``Restorer(strength=...)`` blends (``helpers.pipeline.bicubic``), without running the cascade again."""
    from .pipeline import bicubic

    scale = restored.shape[0] // original.shape[0]
    baseline = bicubic(image_to_tensor(original), scale)
    return tensor_to_image(torch.lerp(baseline, image_to_tensor(restored), float(strength))[0])


def interactive_compare(
    stages_by_image: Mapping[str, Mapping[str, np.ndarray]], width: int = 800, strength_slider: bool = False,
) -> Any:
    """An ipywidgets viewer: a dropdown picks the image, a slider steps through its stages.

    ``stages_by_image`` maps image names to {stage: RGB uint8} (e.g. ``restore_stages`` outputs, plus a
    "target" entry to get PSNR in the caption). Every image is shown ``width`` pixels wide with its
    aspect kept; the caption gives its real size. ``strength_slider`` adds a strength slider (0-1) that shows
    the "restored" stage blended with the bicubic-upscaled "input" (``strength_blend``), as ``restore
    --strength`` would write it. Returns the widget (display it in a notebook).
    """
    import ipywidgets as widgets

    if not stages_by_image:
        raise ValueError("interactive_compare: no images")
    names = list(stages_by_image)
    picker = widgets.Dropdown(options=names, value=names[0], description="image")
    stage = widgets.SelectionSlider(options=list(stages_by_image[names[0]]), description="stage", continuous_update=False)
    strength = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="strength", continuous_update=False)
    caption = widgets.HTML()
    view = widgets.Image(format="png", width=width)

    def show(*_: Any) -> None:
        stages = stages_by_image[picker.value]
        image = stages[stage.value]
        text = f"<b>{picker.value}</b>: {stage.value}, {image.shape[1]}x{image.shape[0]}"
        if strength_slider and stage.value == "restored" and "input" in stages and strength.value != 1:
            image = strength_blend(stages["input"], image, strength.value)
            text += f" at strength {strength.value:.2f}"
        target = stages.get(TARGET)
        if target is not None and stage.value != TARGET:
            text += f", PSNR {_quality(image, target)[0]:.2f} dB"
        caption.value = text
        view.value = _png_bytes(image)

    def pick_image(*_: Any) -> None:
        options = list(stages_by_image[picker.value])
        current = stage.value
        with stage.hold_trait_notifications():
            stage.options = options
            stage.value = current if current in options else options[0]
        show()

    picker.observe(pick_image, names="value")
    stage.observe(show, names="value")
    strength.observe(show, names="value")
    show()
    controls = [picker, stage, strength] if strength_slider else [picker, stage]
    return widgets.VBox([widgets.HBox(controls), caption, view])
