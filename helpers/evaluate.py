"""Evaluation: the cascade's ablation table beside classical baselines, and single-stage benchmarks.

``evaluate_cascade`` measures every CUMULATIVE stage of the cascade on (blurry 640x360 input,
sharp 1280x720 target) pairs: "input (bicubic x2)" (which is the bicubic baseline), "+ DnCNN",
"+ UNet", "+ EDSR", "+ unsharp", plus the classical "bicubic + unsharp" baseline. Stages before
EDSR run at the input size and are upscaled bicubically to be measured; from EDSR on, EDSR's
output replaces that upscaling. ``evaluate_denoising``, ``evaluate_super_resolution`` and
``evaluate_deblurring`` measure one network on its own task (CBSD68 sigma 25, McMaster x2, ...).

Every measured image is 8-bit (what a user saves), compared with ``helpers.metrics`` in RGB (and
on the BT.601 Y channel when asked). Tables are lists of dicts; ``helpers.report`` writes them as CSV,
Markdown and image grids, and holds the ``python -m helpers evaluate`` command.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .degrade import add_gaussian_noise, downscale_with, motion_blur
from .inference import pick_device, prepare_for_inference
from .io import (
    float_image,
    image_to_tensor,
    tensor_to_image,
    uint8_image,
    write_image,
)
from .metrics import mse, psnr, ssim
from .models import UnsharpMask

__all__ = [
    "STAGE_LABELS",
    "NOISE_PROTOCOLS",
    "Evaluation",
    "upscale_bicubic",
    "image_metrics",
    "to_target_size",
    "evaluate_cascade",
    "evaluate_denoising",
    "evaluate_super_resolution",
    "evaluate_deblurring",
    "group_evaluations",
    "format_table",
]

# restore_stages() key -> row label of the cumulative-stage table
STAGE_LABELS = {
    "input": "input (bicubic x2)",
    "dncnn": "+ DnCNN",
    "unet": "+ UNet",
    "edsr": "+ EDSR",
    "unsharp": "+ unsharp",
}
UNSHARP_BASELINE = "bicubic + unsharp"
TARGET = "target"
NOISE_PROTOCOLS = {
    "clipped": "noisy image clipped to [0, 1] and rounded to 8 bits, like a saved photo",
    "paper": "float noise, not clipped, not rounded, as in denoising papers' tables",
}


class Evaluation(NamedTuple):
    """What every evaluator returns.

    table: one dict per method (row): ``method``, ``psnr``, ``ssim``, ``mse`` (means over images; MSE
        on the [0, 1] scale), ``psnr_gain`` (dB over the first row), and ``psnr_y``/``ssim_y`` when asked.
    per_image: one dict per (image, method) with the same metrics and ``image`` (its name).
    examples: (image name, {method: uint8 image, ..., "target": uint8}) for the first few images,
        the images exactly as measured, for grids.
    """

    table: list[dict[str, Any]]
    per_image: list[dict[str, Any]]
    examples: list[tuple[str, dict[str, np.ndarray]]]


# ----------------------------------------------------------------------------- measuring


def upscale_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """RGB uint8 image -> bicubic-resized (torch, a=-0.75, half-pixel centres) uint8 of size (height, width)."""
    if image.shape[:2] == (height, width):
        return image
    tensor = torch.nn.functional.interpolate(image_to_tensor(image), size=(height, width), mode="bicubic", align_corners=False)
    return tensor_to_image(tensor.clamp_(0, 1))[0]


def image_metrics(
    image: np.ndarray, target: np.ndarray, y_channel: bool = False, crop_border: int = 0
) -> dict[str, float]:
    """PSNR (dB), SSIM and MSE ([0, 1] scale) of an RGB uint8 image against its target, RGB or Y channel.

    ``y_channel`` adds ``psnr_y`` and ``ssim_y`` to the RGB metrics; ``crop_border`` applies to all.
    """
    return _batch_metrics([image], target, y_channel, crop_border)[0]


def _batch_metrics(
    images: Sequence[np.ndarray], target: np.ndarray, y_channel: bool, crop_border: int, device: torch.device | str = "cpu"
) -> list[dict[str, float]]:
    """``image_metrics`` of several images against one target, measured as one batch (fewer, larger ops)."""
    for image in images:
        if image.shape != target.shape:
            raise ValueError(f"image and target differ in shape: {image.shape} vs {target.shape}")
    prediction = image_to_tensor(np.stack(images), device)
    reference = image_to_tensor(target, device).expand_as(prediction)
    options = {"crop_border": crop_border, "reduction": "none"}
    values = {
        "psnr": psnr(prediction, reference, **options),
        "ssim": ssim(prediction, reference, **options),
        "mse": mse(prediction, reference, **options),
    }
    if y_channel:
        values["psnr_y"] = psnr(prediction, reference, y_channel=True, **options)
        values["ssim_y"] = ssim(prediction, reference, y_channel=True, **options)
    return [{key: float(value[index]) for key, value in values.items()} for index in range(len(images))]


def to_target_size(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The image at the target's size: itself, or its bicubic upscaling when it is a smaller same-aspect frame."""
    (height, width), (target_height, target_width) = image.shape[:2], target.shape[:2]
    if (height, width) == (target_height, target_width):
        return image
    if height * target_width != width * target_height or height > target_height:
        raise ValueError(f"cannot compare a {width}x{height} image with a {target_width}x{target_height} target")
    return upscale_bicubic(image, target_height, target_width)


class _Collector:
    """Accumulates per-image metrics in method order, keeps the first few images, builds the table."""

    def __init__(self, y_channel: bool, crop_border: int, keep_examples: int, device: torch.device | str = "cpu") -> None:
        self.y_channel, self.crop_border, self.keep_examples = y_channel, crop_border, keep_examples
        self.device = device
        self.per_image: list[dict[str, Any]] = []
        self.examples: list[tuple[str, dict[str, np.ndarray]]] = []
        self.methods: list[str] = []

    def add(self, name: str, images: Mapping[str, np.ndarray], target: np.ndarray) -> None:
        measured = _batch_metrics(list(images.values()), target, self.y_channel, self.crop_border, self.device)
        for method, metrics in zip(images, measured):
            if method not in self.methods:
                self.methods.append(method)
            self.per_image.append({"image": name, "method": method, **metrics})
        if len(self.examples) < self.keep_examples:
            self.examples.append((name, {**images, TARGET: target}))

    def result(self) -> Evaluation:
        if not self.per_image:
            raise ValueError("nothing to evaluate: no images")
        keys = [key for key in self.per_image[0] if key not in ("image", "method")]
        table = []
        for method in self.methods:
            rows = [row for row in self.per_image if row["method"] == method]
            table.append({"method": method, **{key: float(np.mean([row[key] for row in rows])) for key in keys}})
        for row in table:
            row["psnr_gain"] = row["psnr"] - table[0]["psnr"]
        return Evaluation(table, self.per_image, self.examples)


# ----------------------------------------------------------------------------- the cascade


def _as_restorer(restorer_or_models: Any, device: str) -> Any:
    """A Restorer as given, or one built from a dict of in-memory models (helpers.pipeline)."""
    if hasattr(restorer_or_models, "restore_stages"):
        return restorer_or_models
    if isinstance(restorer_or_models, Mapping):
        from .pipeline import Restorer

        return Restorer(dict(restorer_or_models), device=device)
    raise ValueError(f"expected a Restorer or a dict of models, received {type(restorer_or_models).__name__}")


def _evaluation_items(data: Any) -> tuple[Sequence[Any], list[str]]:
    """Indexable (input, target) items and their names, from helpers.data pairs, a dataset or arrays."""
    items = data if hasattr(data, "__getitem__") and hasattr(data, "__len__") else list(data)
    if len(items) and hasattr(items[0], "sharp") and hasattr(items[0], "blurry"):  # helpers.data.Pair
        from .data import build_dataset

        names = [pair.name for pair in items]
        dataset = build_dataset("pipeline", items)
        return dataset, names if len(dataset) == len(names) else [f"{index:04d}" for index in range(len(dataset))]
    return items, [f"{index:04d}" for index in range(len(items))]


def _unsharp_of(restorer: Any) -> nn.Module:
    """The restorer's own unsharp mask (so the baseline sharpens identically), else the default one."""
    unsharp = getattr(restorer, "models", {}).get("unsharp")
    if isinstance(unsharp, UnsharpMask):  # a CPU copy: the baseline runs on uint8 images in host memory
        return UnsharpMask(unsharp.sigma, unsharp.amount, unsharp.threshold)
    return UnsharpMask()


def evaluate_cascade(
    restorer_or_models: Any,
    data: Any,
    *,
    device: str = "auto",
    y_channel: bool = False,
    keep_examples: int = 3,
    save_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> Evaluation:
    """The ablation: each cumulative stage of the cascade and the classical baselines on paired frames.

    Args:
        restorer_or_models: a ``helpers.pipeline.Restorer`` or a dict {"dncnn", "unet", "edsr"} of models.
        data: a list of ``helpers.data.Pair`` (e.g. ``pairs_for("sample", "test")``), a pipeline
            dataset (``build_dataset("pipeline", pairs)``), or a sequence of (input, target) uint8 arrays.
        device: for a Restorer built from models.
        y_channel: also report PSNR/SSIM on the Y channel.
        keep_examples: how many images to keep in ``Evaluation.examples`` for grids.
        save_dir: when given, each final restored image is written there as ``<name>.png``.
        limit: evaluate only the first ``limit`` images.

    Rows: "input (bicubic x2)" (= the bicubic baseline), one per stage the restorer runs
    ("+ DnCNN", "+ UNet", "+ EDSR", "+ unsharp"), then "bicubic + unsharp".
    """
    restorer = _as_restorer(restorer_or_models, device)
    unsharp = _unsharp_of(restorer)
    collector = _Collector(y_channel, 0, keep_examples, getattr(restorer, "device", "cpu"))
    items, names = _evaluation_items(data)
    for index in tqdm(range(len(items) if limit is None else min(limit, len(items))), desc="evaluating cascade", unit="image"):
        source, target = items[index]
        if isinstance(source, torch.Tensor):
            source, target = tensor_to_image(source), tensor_to_image(target)
        name = names[index]
        stages = restorer.restore_stages(source)
        measured = {STAGE_LABELS.get(stage, stage): to_target_size(image, target) for stage, image in stages.items()}
        bicubic = measured[STAGE_LABELS["input"]]
        measured[UNSHARP_BASELINE] = unsharp.apply_uint8(bicubic)
        collector.add(name, measured, target)
        if save_dir is not None:
            final = list(stages.values())[-1]
            write_image(Path(save_dir) / f"{_file_stem(name)}.png", final)
    return collector.result()


def _file_stem(name: str) -> str:
    """An image name ("rocket/000001") as a flat file stem ("rocket_000001")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


# ----------------------------------------------------------------------------- single stages


def _input_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """A degraded RGB image as a (1, 3, H, W) batch: uint8 (a saved image) or float32 (the paper's unclipped noise)."""
    if image.dtype == np.uint8:
        return image_to_tensor(image, device)
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)


def _run_model(model: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 or float32 image -> uint8 through ``model`` in float32 on ``device`` (no autocast: benchmark numbers stay exact)."""
    prepared = prepare_for_inference(model, device)

    def run(image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return tensor_to_image(prepared(_input_tensor(image, device)).clamp(0, 1))[0]

    return run


def _models_by_label(model: nn.Module | Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    """One network (labelled by its class name) or several, labelled as given."""
    return dict(model) if isinstance(model, Mapping) else {type(model).__name__: model}


def _evaluate_single(
    models: Mapping[str, nn.Module],
    images: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    degrade: Callable[[np.ndarray, int], np.ndarray],
    baseline_label: str,
    *,
    prepare_target: Callable[[np.ndarray], np.ndarray] = lambda image: image,
    baseline: Callable[[np.ndarray, np.ndarray], np.ndarray] = lambda degraded, target: degraded,
    extra_baselines: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    y_channel: bool = False,
    crop_border: int = 0,
    device: str = "auto",
    keep_examples: int = 3,
    desc: str = "evaluating",
) -> Evaluation:
    """Shared loop: degrade each clean image, measure the baseline(s) and each model's output against it."""
    named = dict(images) if isinstance(images, Mapping) else {f"{index:04d}": image for index, image in enumerate(images)}
    device = pick_device(device)
    runs = {label: _run_model(model, device) for label, model in models.items()}
    collector = _Collector(y_channel, crop_border, keep_examples, device)
    for index, (name, image) in enumerate(tqdm(named.items(), desc=desc, unit="image")):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {name}: expected RGB uint8 (H, W, 3), received {image.dtype} {image.shape}")
        target = prepare_target(image)
        degraded = degrade(target, index)
        shown_baseline = baseline(degraded, target)
        measured = {baseline_label: shown_baseline}
        for label, make in (extra_baselines or {}).items():
            measured[label] = make(shown_baseline)
        for label, run in runs.items():
            measured[label] = run(degraded)
        collector.add(name, measured, target)
    return collector.result()


def evaluate_denoising(
    model: nn.Module | Mapping[str, nn.Module],
    images: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    sigma: float = 25.0,
    seed: int = 0,
    *,
    noise_protocol: str = "clipped",
    device: str = "auto",
    y_channel: bool = False,
    keep_examples: int = 3,
) -> Evaluation:
    """Denoising (e.g. CBSD68, sigma 25): clean uint8 images + white Gaussian noise -> model(s) -> PSNR/SSIM.

    ``model``: one network, or a dict {label: network} to compare several on the same noisy images.
    Image ``i`` gets noise from ``np.random.default_rng([seed, i])`` (``helpers.degrade.add_gaussian_noise``).
    ``noise_protocol`` (``NOISE_PROTOCOLS``): "clipped" clips the noisy image to [0, 1] and rounds it to
    8 bits like a saved noisy photo; "paper" feeds the float noisy image unclipped, as denoising papers do
    (their tables are not comparable with "clipped" ones). Outputs are measured in 8 bits either way.
    Rows: "noisy input (sigma S, PROTOCOL)" (measured in 8 bits in both protocols), then each model.
    """
    if noise_protocol not in NOISE_PROTOCOLS:
        raise ValueError(f"noise_protocol: expected one of {', '.join(NOISE_PROTOCOLS)}, received {noise_protocol!r}")

    def noisy(image: np.ndarray, index: int) -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        degraded = add_gaussian_noise(float_image(image), sigma, rng, clip=noise_protocol == "clipped")
        return uint8_image(degraded) if noise_protocol == "clipped" else degraded

    return _evaluate_single(
        _models_by_label(model), images, noisy, f"noisy input (sigma {sigma:g}, {noise_protocol})",
        baseline=lambda degraded, target: degraded if noise_protocol == "clipped" else uint8_image(degraded),
        y_channel=y_channel, device=device, keep_examples=keep_examples, desc="evaluating denoising",
    )


def _crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right so height and width divide by ``multiple`` (SR benchmarks' "modcrop")."""
    height, width = image.shape[:2]
    return image[: height - height % multiple, : width - width % multiple]


def _downscale_uint8(image: np.ndarray, scale: int, method: str) -> np.ndarray:
    """Low-resolution input made with one of ``helpers.degrade.DOWNSCALE_KERNELS``: "area" (the sample set's
    frames), "bicubic" (antialiased, close to MATLAB imresize: the published SR tables' input) or
    "opencv-bicubic" (cv2.INTER_CUBIC without antialiasing: aliased, as many user pipelines shrink)."""
    return uint8_image(downscale_with(float_image(image), scale, method))


def evaluate_super_resolution(
    model: nn.Module,
    images: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    scale: int = 2,
    y_channel: bool = True,
    crop_border: int | None = None,
    *,
    downscale_method: str = "area",
    device: str = "auto",
    keep_examples: int = 3,
) -> Evaluation:
    """Super-resolution (e.g. McMaster x2): HR image (cropped to a multiple of ``scale``) -> downscaled input
    -> model, against bicubic upscaling. SR convention by default: Y channel, ``crop_border = scale``.

    ``downscale_method``: "area" (the sample set's frames), "bicubic" (published tables' input) or
    "opencv-bicubic" (aliased; see ``_downscale_uint8``).
    """
    crop_border = scale if crop_border is None else crop_border

    def low_res(target: np.ndarray, index: int) -> np.ndarray:
        return _downscale_uint8(target, scale, downscale_method)

    def bicubic(degraded: np.ndarray, target: np.ndarray) -> np.ndarray:
        return upscale_bicubic(degraded, *target.shape[:2])

    return _evaluate_single(
        _models_by_label(model), images, low_res, f"bicubic x{scale}",
        prepare_target=lambda image: _crop_to_multiple(image, scale), baseline=bicubic,
        y_channel=y_channel, crop_border=crop_border, device=device, keep_examples=keep_examples,
        desc=f"evaluating x{scale} super-resolution",
    )


def evaluate_deblurring(
    model: nn.Module,
    images: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    seed: int = 0,
    max_shift: float | None = None,
    *,
    unsharp: nn.Module | None = None,
    device: str = "auto",
    y_channel: bool = False,
    keep_examples: int = 3,
) -> Evaluation:
    """Deblurring: sharp uint8 images + synthetic GOPRO-style motion blur (``helpers.degrade.motion_blur``,
    rng ``default_rng([seed, i])``, ``max_shift`` pixels or its default) -> model. Rows: "blurry input",
    "blurry + unsharp" (classical baseline), model.
    """
    unsharp = unsharp or UnsharpMask()

    def blurred(image: np.ndarray, index: int) -> np.ndarray:
        rng = np.random.default_rng([seed, index])
        return uint8_image(motion_blur(float_image(image), rng, max_shift=max_shift))

    return _evaluate_single(
        _models_by_label(model), images, blurred, "blurry input",
        extra_baselines={"blurry + unsharp": unsharp.apply_uint8},
        y_channel=y_channel, device=device, keep_examples=keep_examples, desc="evaluating deblurring",
    )


# ----------------------------------------------------------------------------- output


def group_evaluations(evaluations: Mapping[str, Evaluation], column: str = "weights") -> Evaluation:
    """Evaluations of the same images with different weights as one, e.g. {"stage-wise": ..., "end-to-end": ...}.

    The table's rows come in one group per evaluation, named in a first column ``column`` (gains stay over
    each group's first row); methods of the per-image rows and examples become "group: method", and each of
    the first group's examples holds every group's images of it, then the target.
    """
    if not evaluations:
        raise ValueError("group_evaluations: no evaluations")
    table = [{column: group, **row} for group, evaluation in evaluations.items() for row in evaluation.table]
    per_image = [
        {**row, "method": f"{group}: {row['method']}"} for group, evaluation in evaluations.items() for row in evaluation.per_image
    ]
    examples = []
    for name, images in next(iter(evaluations.values())).examples:
        merged = {
            f"{group}: {method}": image
            for group, evaluation in evaluations.items()
            for method, image in dict(evaluation.examples).get(name, {}).items()
            if method != TARGET
        }
        examples.append((name, {**merged, TARGET: images[TARGET]}))
    return Evaluation(table, per_image, examples)



def _format_value(key: str, value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if key == "mse":
            return f"{value:.6f}"
        if key.startswith("ssim"):
            return f"{value:.4f}"
        if key == "psnr_gain":
            return f"{value:+.2f}"
        return f"{value:.2f}"
    return str(value)


_HEADERS = {"method": "method", "image": "image", "psnr": "PSNR (dB)", "ssim": "SSIM", "mse": "MSE",
            "psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y", "psnr_gain": "gain (dB)"}


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table with padded columns (readable as plain text too). Hand-written: a dozen lines
    instead of a pandas + tabulate dependency."""
    keys = list(rows[0])
    cells = [[_HEADERS.get(key, key) for key in keys]] + [[_format_value(key, row[key]) for key in keys] for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(keys))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.ljust(width) for value, width in zip(values, widths)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(line, cells[1:])])
