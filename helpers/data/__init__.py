"""Paired data: dataset readers, the embedded sample set, sources, and the per-stage datasets.

Readers give sequences of ``Pair`` (a sharp and a blurry frame of one scene). The stage datasets
turn pairs into ``(input, target)`` float32 tensors (3, h, w) in [0, 1] for DnCNN (denoise),
UNet (deblur), EDSR (2x super-resolution) and the whole cascade, drawing random patches with
paired augmentation whose randomness depends only on (seed, epoch, index): identical across
DataLoader worker counts and exactly reproducible on resume.

One job per file, each importing only the files above it:

- ``pairs``: readers of datasets on disk (``GoproPairs``, ``RealBlurPairs``, ``FolderPairs``) and ``split_by_sequence``;
- ``generated_sets``: the embedded sample set and folder sets, built once in the GOPRO layout;
- ``sources``: the "kind:PATH" source specs (``resolve_source``, ``pairs_for``);
- ``patches``: paired augmentation and recolouring, ``PhotoDegradations`` (noise, blur, downscale), blur kernels;
- ``frames``: the frames of a dataset's pairs and ``PairedFrameDataset``, base of the frame-pair datasets;
- ``photos``: the ``photos:`` source (``PhotoLibrary``) and ``PhotoPatches``, base of the photo datasets;
- ``denoise``, ``deblur``, ``super_resolution``, ``cascade``: each stage's datasets, from frame pairs and from photos;
- ``stages``: a stage's dataset by name (``build_dataset``, ``build_photo_dataset``).

The names below are re-exported here: ``from helpers import data; data.build_dataset(...)``.
"""

from .cascade import (
    CascadeDataset,
    PhotoCascadeDataset,
    PhotoCascadeTrainingDataset,
    PipelineDataset,
    cascade_targets,
)
from .deblur import DeblurDataset, PhotoDeblurDataset
from .denoise import DenoiseDataset, PhotoDenoiseDataset
from .frames import BLURRY_VIEW, PairedFrameDataset, View
from .generated_sets import SAMPLE_SET_VERSION, build_folder_set, build_sample_set
from .pairs import FolderPairs, GoproPairs, Pair, PairList, RealBlurPairs, split_by_sequence
from .patches import (
    COLOUR_GAIN_LOW,
    SYNTHETIC_BLUR_SHIFT,
    SYNTHETIC_BLUR_SMALLEST,
    PhotoDegradations,
    load_blur_kernels,
)
from .photos import (
    BLUR_MARGIN,
    PHOTO_CACHE_BYTES,
    PHOTO_MIN_SCALE,
    PhotoFolder,
    PhotoLibrary,
    PhotoPatches,
    parse_photo_folders,
    split_photos,
)
from .sources import Source, Split, pairs_for, resolve_source
from .stages import DATASETS, PHOTO_DATASETS, build_dataset, build_photo_dataset
from .super_resolution import PhotoSuperResolutionDataset, SuperResolutionDataset

__all__ = [
    # pairs
    "Pair", "PairList", "GoproPairs", "RealBlurPairs", "FolderPairs", "split_by_sequence",
    # generated_sets
    "SAMPLE_SET_VERSION", "build_sample_set", "build_folder_set",
    # sources
    "Split", "Source", "resolve_source", "pairs_for",
    # patches
    "SYNTHETIC_BLUR_SHIFT", "SYNTHETIC_BLUR_SMALLEST", "COLOUR_GAIN_LOW", "PhotoDegradations", "load_blur_kernels",
    # frames
    "View", "BLURRY_VIEW", "PairedFrameDataset",
    # photos
    "PHOTO_MIN_SCALE", "PHOTO_CACHE_BYTES", "BLUR_MARGIN", "PhotoFolder", "parse_photo_folders", "split_photos",
    "PhotoLibrary", "PhotoPatches",
    # denoise, deblur, super_resolution, cascade
    "DenoiseDataset", "PhotoDenoiseDataset",
    "DeblurDataset", "PhotoDeblurDataset",
    "SuperResolutionDataset", "PhotoSuperResolutionDataset",
    "PipelineDataset", "cascade_targets", "CascadeDataset", "PhotoCascadeDataset", "PhotoCascadeTrainingDataset",
    # stages
    "DATASETS", "build_dataset", "PHOTO_DATASETS", "build_photo_dataset",
]
