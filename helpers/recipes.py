"""A stage's recipe: the config dict stored in every checkpoint builds its datasets and its network.

Every front door calls these, so the same dict runs the same thing: notebooks 02-05
(``recipes.build_datasets(stage, CONFIG)``), ``python -m helpers train`` and ``train cascade``, whose
flags only become the dict (``helpers.commands.train``). ``CONFIG["data"]`` holds the data settings
(``DATA_DEFAULTS`` lists them with their defaults); ``seed``, ``batch_size`` and ``steps_per_epoch``
come from the top level, as ``helpers.training.fit`` reads them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset

from .cache import default_cache_dir
from .checkpoint import load_model, load_weights
from .data import (
    PhotoDegradations,
    PhotoLibrary,
    build_dataset,
    build_photo_dataset,
    load_blur_kernels,
    pairs_for,
    parse_photo_folders,
)
from .metrics import psnr
from .models import build_model as build_network
from .training.config import describes
from .training.reproducibility import seed_everything

__all__ = [
    "STAGES", "STAGE_DEFAULTS", "DATA_DEFAULTS", "PHOTOS_PREFIX", "StageDefaults",
    "data_settings", "build_datasets", "build_model", "cascade_validation",
]

STAGES = ("dncnn", "unet", "edsr", "cascade")
NOISY_STAGES = ("dncnn", "cascade")  # stages whose inputs get ``sigma``'s noise
PHOTOS_PREFIX = "photos:"
PHOTO_VAL_FRACTION, PAIR_VAL_FRACTION = 0.05, 0.2
CASCADE_VAL_ITEMS = 8  # held-out cascade crops validated after every epoch of a photos: run


@dataclass(frozen=True)
class StageDefaults:
    """Per-stage defaults of a recipe: learning rate, training patch side (the input's) and loss."""

    lr: float
    patch: int
    loss: dict


STAGE_DEFAULTS: dict[str, StageDefaults] = {
    # DnCNN: MSE on the residual as in the paper. Adam 1e-3 left the 17-layer network stuck at the
    # identity on the sample set (it learned to predict zero noise); 3e-4 learns from the first steps.
    "dncnn": StageDefaults(lr=3e-4, patch=50, loss={"weights": {"mse": 1.0}}),
    # UNet deblurring: L1 for sharpness, small SSIM and Sobel-edge terms for structure and edges.
    "unet": StageDefaults(lr=3e-4, patch=128, loss={"weights": {"mse": 0.0, "l1": 1.0, "ssim": 0.1, "sobel": 0.1}}),
    # EDSR: L1 as in the paper (patch = low-resolution side).
    "edsr": StageDefaults(lr=2e-4, patch=48, loss={"weights": {"mse": 0.0, "l1": 1.0}}),
    # The cascade fine-tunes trained networks: a tenth of their rates; 128 low-res = 256x256 high-res patches.
    # Its loss is helpers.cascade.DEFAULT_CASCADE_LOSS (a per-stage loss, built by build_cascade_loss).
    "cascade": StageDefaults(lr=5e-5, patch=128, loss={}),
}

# Every data setting a recipe reads, with its default ("patch": None is the stage's STAGE_DEFAULTS patch).
DATA_DEFAULTS: dict[str, Any] = {
    "source": "sample",  # "sample", "gopro:PATH", "realblur:PATH", "folder:PATH" or "photos:DIR[=SHARE],..."
    "patch": None,
    "val_patch": 128,  # validation crop side; None or 0: whole frames
    "val_fraction": None,  # held-out share of sequences (photos: of each folder's photos); None: 0.2 (photos 0.05)
    "samples_per_frame": None,  # patches per training frame and epoch; None: enough for steps_per_epoch
    "val_crops": 4,  # fixed validation crops per frame (with val_patch)
    "sigma": (0.0, 55.0),  # dncnn, cascade: noise level (0-255), fixed or a (low, high) range drawn per patch
    "val_sigma": None,  # validation noise; None: sigma
    "clean_fraction": 0.0,  # dncnn, cascade: share of training patches left noise-free
    "blurry_fraction": 0.0,  # dncnn: share of training patches cut from blurry frames
    "colour_augment": 0.0,  # share of training patch pairs recoloured
    "synthetic_blur": 0.0,  # unet: share of training inputs blurred afresh instead of the stored blurry frame
    "extra": None,  # unet: extra training pairs, e.g. "realblur:PATH" (all its training scenes, never validated on)
    "extra_ratio": 0.0,  # unet: share of training patches drawn from ``extra``
    # photos: sources (sharp photos at native resolution, degraded on the fly)
    "kernels": None,  # real blur kernels (.npz), beside synthetic camera trajectories
    "kernel_fraction": 0.5,
    "nonuniform_fraction": 0.2,
    "sharp_fraction": 0.0,  # unet: share of training inputs left unblurred
    "min_scale": 0.5,
    "downscale_kernels": "area,bicubic,opencv-bicubic",
    "val_items": 96,
    "cascade_weights": None,  # per-epoch whole-cascade validation: the other stages' weights (None: bundled; "none": off)
}
RECORDED_ONLY = ("init", "origin")  # recorded in the data dict for the record; they build nothing here


def data_settings(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["data"]`` over ``DATA_DEFAULTS``, with the stage's patch; a misspelt key is a ValueError naming it."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    given = dict(config.get("data") or {})
    unknown = sorted(set(given) - set(DATA_DEFAULTS) - set(RECORDED_ONLY))
    if unknown:
        raise ValueError(f"unknown data setting {unknown[0]!r}; the settings are {', '.join(DATA_DEFAULTS)}")
    settings = {**DATA_DEFAULTS, **given}
    settings["patch"] = settings["patch"] or STAGE_DEFAULTS[stage].patch
    if settings["val_fraction"] is None:
        settings["val_fraction"] = PHOTO_VAL_FRACTION if _is_photos(settings) else PAIR_VAL_FRACTION
    if settings["val_sigma"] is None:
        settings["val_sigma"] = settings["sigma"]
    return settings


def _is_photos(settings: Mapping[str, Any]) -> bool:
    return str(settings["source"]).startswith(PHOTOS_PREFIX)


def _run_numbers(config: Mapping[str, Any]) -> tuple[int, int, int | None]:
    return int(config.get("seed", 0)), int(config.get("batch_size", 16)), config.get("steps_per_epoch")


_DEFAULT_CACHE = object()  # the data cache's frames folder, decided when building (IMAGE_REPAIR_CACHE may change)


def build_datasets(
    stage: str, config: Mapping[str, Any], *, world_size: int = 1, cache_dir: str | os.PathLike | None | object = _DEFAULT_CACHE
) -> tuple[Dataset, Dataset]:
    """The training and validation datasets ``config`` describes for ``stage``.

    Paired sources ("sample", "gopro:", "folder:") give patches of frame pairs (validation: fixed crops
    of held-out sequences); a ``photos:`` source gives patches of held-out photos degraded on the fly.
    ``cache_dir`` is the decoded-frame cache (default: the data cache's ``frames``; None: decode every
    time): a folder of this machine, so not part of the recipe. ``world_size`` ranks share the epoch.
    Raises FileNotFoundError for missing data (an ``extra`` source included) and ValueError for bad settings.
    """
    settings = data_settings(stage, config)
    if _is_photos(settings):
        return _photo_datasets(stage, settings, config, world_size)
    seed, batch_size, steps = _run_numbers(config)
    source, val_fraction = settings["source"], settings["val_fraction"]
    train_pairs = pairs_for(source, "train", val_fraction, seed)
    val_pairs = pairs_for(source, "val", val_fraction, seed)
    if not val_pairs:
        raise ValueError(f"{source}: no validation sequences (need at least two training sequences and val_fraction > 0)")
    folder = default_cache_dir() / "frames" if cache_dir is _DEFAULT_CACHE else cache_dir
    common: dict[str, Any] = {"cache_dir": None if folder is None else Path(folder), "seed": seed}
    samples_per_frame = settings["samples_per_frame"] or max(1, math.ceil((steps or 0) * batch_size * world_size / len(train_pairs)))
    train = build_dataset(stage, train_pairs, patch_size=settings["patch"], augment=True, samples_per_frame=samples_per_frame,
                          **common, **_noise(stage, settings["sigma"]), **_training_only(stage, settings))
    val_patch = settings["val_patch"] or None
    val = build_dataset(stage, val_pairs, patch_size=val_patch, augment=False,
                        samples_per_frame=settings["val_crops"] if val_patch else 1, **common, **_noise(stage, settings["val_sigma"]))
    return train, val


def _noise(stage: str, sigma: Any) -> dict[str, Any]:
    return {"sigma": tuple(sigma) if isinstance(sigma, list) else sigma} if stage in NOISY_STAGES else {}


def _training_only(stage: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Dataset options that shape the training set only (validation stays plain)."""
    options: dict[str, Any] = {"colour_augment": settings["colour_augment"]}
    if stage == "dncnn":
        options.update(clean_fraction=settings["clean_fraction"], blurry_fraction=settings["blurry_fraction"])
    elif stage == "cascade":
        options.update(clean_fraction=settings["clean_fraction"])
    elif stage == "unet":
        options.update(synthetic_blur=settings["synthetic_blur"], **_extra_pairs(settings))
    return options


def _extra_pairs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The unet's extra training pairs (every training scene of ``extra``); none without an ``extra`` source."""
    extra, ratio = settings["extra"], settings["extra_ratio"]
    if not extra:
        if ratio:
            raise ValueError(f"extra_ratio {ratio} needs an extra source (data 'extra', e.g. 'realblur:PATH')")
        return {}
    return {"extra_pairs": pairs_for(extra, "train", val_fraction=0.0), "extra_ratio": ratio}


def _photo_degradations(settings: Mapping[str, Any], training: bool) -> PhotoDegradations:
    """A photos: source's on-the-fly degradations; validation gets the same distribution (fixed by seed) except
    the training-only shares of untouched patches (``clean_fraction``, ``sharp_fraction``)."""
    return PhotoDegradations(
        sigma=_noise("dncnn", settings["sigma" if training else "val_sigma"])["sigma"],
        clean_fraction=settings["clean_fraction"] if training else 0.0,
        blurry_fraction=settings["blurry_fraction"],
        sharp_fraction=settings["sharp_fraction"] if training else 0.0,  # validation: every input needs repair
        kernels=load_blur_kernels(settings["kernels"]) if settings["kernels"] else (),
        kernel_fraction=settings["kernel_fraction"],
        nonuniform_fraction=settings["nonuniform_fraction"],
        downscale_kernels=tuple(settings["downscale_kernels"].split(",")),
    )


def _photo_libraries(settings: Mapping[str, Any], seed: int) -> tuple[PhotoLibrary, PhotoLibrary]:
    folders = parse_photo_folders(settings["source"][len(PHOTOS_PREFIX):])
    return PhotoLibrary(folders, "train", settings["val_fraction"], seed), PhotoLibrary(folders, "val", settings["val_fraction"], seed)


def _photo_datasets(stage: str, settings: Mapping[str, Any], config: Mapping[str, Any], world_size: int) -> tuple[Dataset, Dataset]:
    """Train and validation patches of a photos: source: held-out photos, the training degradations, fixed by seed."""
    seed, batch_size, steps = _run_numbers(config)
    train_photos, val_photos = _photo_libraries(settings, seed)
    length = (steps or max(1, len(train_photos) // batch_size)) * batch_size * world_size
    common = {"min_scale": settings["min_scale"], "seed": seed}
    train = build_photo_dataset(stage, train_photos, patch_size=settings["patch"], length=length, augment=True,
                                colour_augment=settings["colour_augment"], degradations=_photo_degradations(settings, True), **common)
    val = build_photo_dataset(stage, val_photos, patch_size=settings["val_patch"] or settings["patch"], length=settings["val_items"],
                              augment=True, degradations=_photo_degradations(settings, False), **common)
    return train, val


def build_model(stage: str, config: Mapping[str, Any]) -> nn.Module:
    """The network a recipe starts from: seeded by ``config["seed"]`` (the same initial weights in every session),
    built from ``config["arch"]``, or loaded from ``config["data"]["init"]`` (fine-tuning) when that is set.

    The cascade is assembled from trained stage weights by ``helpers.cascade.load_cascade`` instead.
    """
    if stage not in STAGES[:3]:
        raise ValueError(f"build_model builds {', '.join(STAGES[:3])}; the cascade comes from helpers.cascade.load_cascade")
    seed_everything(int(config.get("seed", 0)))
    init = (config.get("data") or {}).get("init")
    if init:
        model = load_model(init, expected_name=stage)
        arch = dict(config.get("arch") or {})
        if arch and not describes(arch, model.arch):  # the whole record or only the constructor arguments
            raise ValueError(f"{init}: holds a {model.arch} network, but the config's arch is {arch}")
        return model
    return build_network(stage, **dict(config.get("arch") or {}).get("kwargs", config.get("arch") or {}))


def cascade_validation(stage: str, config: Mapping[str, Any]) -> Callable[[nn.Module], float] | None:
    """For a photos: source, the whole cascade's PSNR on fixed held-out crops with the network in training swapped in.

    The other stages come from ``data.cascade_weights`` (default: the bundled weights; "none": no such
    validation); the crops are degraded in the cascade's order (blur at high resolution, 2x downscale,
    noise), float32 inference. None for paired sources and for the cascade itself.
    """
    from .gates import DEBLUR_RAMP
    from .pipeline import DEFAULT_WEIGHTS_DIR, NETWORK_STAGES, Restorer

    settings = data_settings(stage, config)
    if not _is_photos(settings) or settings["cascade_weights"] == "none" or stage == "cascade":
        return None
    weights = Path(settings["cascade_weights"]) if settings["cascade_weights"] else DEFAULT_WEIGHTS_DIR
    seed = int(config.get("seed", 0))
    files = {name: load_weights(weights / f"{name}.pt", expected_name=name) for name in NETWORK_STAGES}  # each read once
    others = {name: loaded.model for name, loaded in files.items() if name != stage}
    _, val_photos = _photo_libraries(settings, seed)
    crops = build_photo_dataset("pipeline", val_photos, patch_size=settings["val_patch"] or settings["patch"],
                                length=CASCADE_VAL_ITEMS, seed=seed, min_scale=settings["min_scale"],
                                degradations=_photo_degradations(settings, False))
    inputs, targets = (torch.stack(tensors) for tensors in zip(*(crops[i] for i in range(len(crops)))))
    # The deblur gate's ramp belongs to a trained UNet: one in training keeps all of its correction (a network near
    # the identity would otherwise be gated off); a finished one is gated as its file says, as Restorer.from_weights does.
    gates: dict[str, Any] = {"deblur": "always"} if stage == "unet" else {"deblur_ramp": files["unet"].deblur_ramp or DEBLUR_RAMP}

    def validate(model: nn.Module) -> float:
        restorer = Restorer({**others, stage: model}, device=next(model.parameters()).device, fp32=True, **gates)
        return psnr(restorer.restore_tensor(inputs).cpu(), targets).item()

    return validate
