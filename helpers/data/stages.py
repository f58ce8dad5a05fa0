"""The dataset of a stage by name ("dncnn", "unet", "edsr", "pipeline", "cascade"), from frame pairs or from photos."""

from __future__ import annotations

from typing import Any, Sequence

from .cascade import CascadeDataset, PhotoCascadeDataset, PhotoCascadeTrainingDataset, PipelineDataset
from .deblur import DeblurDataset, PhotoDeblurDataset
from .denoise import DenoiseDataset, PhotoDenoiseDataset
from .frames import PairedFrameDataset
from .pairs import Pair
from .photos import PhotoLibrary, PhotoPatches
from .super_resolution import PhotoSuperResolutionDataset, SuperResolutionDataset


DATASETS: dict[str, type[PairedFrameDataset]] = {
    "dncnn": DenoiseDataset,
    "unet": DeblurDataset,
    "edsr": SuperResolutionDataset,
    "pipeline": PipelineDataset,
    "cascade": CascadeDataset,
}


def build_dataset(stage: str, pairs: Sequence[Pair], **options) -> PairedFrameDataset:
    """The dataset for a stage by name ("dncnn", "unet", "edsr", "pipeline", "cascade"); options go to its constructor."""
    if stage not in DATASETS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[stage](pairs, **options)


PHOTO_DATASETS: dict[str, type[PhotoPatches]] = {
    "dncnn": PhotoDenoiseDataset,
    "unet": PhotoDeblurDataset,
    "edsr": PhotoSuperResolutionDataset,
    "pipeline": PhotoCascadeDataset,
    "cascade": PhotoCascadeTrainingDataset,
}


def build_photo_dataset(stage: str, library: PhotoLibrary, **options: Any) -> PhotoPatches:
    """The ``photos:`` dataset of a stage by name ("dncnn", "unet", "edsr", "pipeline", "cascade"); options go to its constructor."""
    if stage not in PHOTO_DATASETS:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(PHOTO_DATASETS)}")
    return PHOTO_DATASETS[stage](library, **options)
