"""Data source specs ("sample", "gopro:PATH", "realblur:PATH", "folder:PATH", "pairs:SHARP,BLURRY") and their pairs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from .generated_sets import build_folder_set, build_sample_set
from .pairs import FolderPairs, GoproPairs, Pair, RealBlurPairs, split_by_sequence


Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Source:
    """A data source that can list train / val / test pairs; readers are created on demand."""

    name: str
    load: Callable[[str], Sequence[Pair]]  # "train" | "test" -> pairs

    def pairs(self, split: Split, val_fraction: float = 0.2, seed: int = 0) -> list[Pair]:
        """Pairs of ``split``; val is carved from train by sequence (``split_by_sequence``)."""
        if split == "test":
            return list(self.load("test"))
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        train, val = split_by_sequence(self.load("train"), val_fraction, seed)
        return train if split == "train" else val


def resolve_source(spec: str, cache_root: str | os.PathLike | None = None) -> Source:
    """Parse a data source: "sample", "gopro:PATH", "realblur:PATH", "folder:PATH" or "pairs:SHARP,BLURRY".

    "folder:PATH" degrades a folder of the user's sharp images (``build_folder_set``); "pairs:"
    takes already paired folders (``FolderPairs``) and gives the same pairs for every split, so it is
    for evaluation, not for training.
    """
    kind, _, argument = spec.partition(":")
    if kind == "sample" and not argument:
        return Source(spec, lambda split: GoproPairs(build_sample_set(cache_root), split))
    if kind == "gopro" and argument:
        return Source(spec, lambda split: GoproPairs(argument, split))
    if kind == "realblur" and argument:
        return Source(spec, lambda split: RealBlurPairs(argument, split))
    if kind == "folder" and argument:
        return Source(spec, lambda split: GoproPairs(build_folder_set(argument, cache_root), split))
    if kind == "pairs" and argument.count(",") == 1:
        sharp_dir, blurry_dir = argument.split(",")
        return Source(spec, lambda split: FolderPairs(sharp_dir, blurry_dir))
    raise ValueError(
        f"unknown data source {spec!r}; use sample, gopro:PATH, realblur:PATH, folder:PATH or pairs:SHARP_DIR,BLURRY_DIR"
    )


def pairs_for(spec: str, split: Split, val_fraction: float = 0.2, seed: int = 0) -> list[Pair]:
    """Shortcut for the CLI: the pairs of ``split`` ("train", "val", "test") of source ``spec``."""
    return resolve_source(spec).pairs(split, val_fraction, seed)
