"""Readers of paired datasets on disk: GOPRO_Large, RealBlur-J, two folders matched by name; split by sequence.

Each reader is a list of ``Pair`` (a sharp and a blurry frame of one scene, with its sequence).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..degrade import FrameFit
from ..io import list_images


@dataclass(frozen=True)
class Pair:
    """One training example on disk: the sharp frame, its blurry version, and its sequence (scene).

    ``fit`` is how its frames become network frames (``helpers.cache.load_frame``): "crop" to
    16:9 (GOPRO and photos), or "whole" for frames of other shapes whose every pixel counts (RealBlur).
    """

    name: str
    sharp: Path
    blurry: Path
    sequence: str
    fit: FrameFit = "crop"


class PairList(Sequence[Pair]):
    """A read-only list of pairs with the sequences they come from."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self._pairs = list(pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index):  # int -> Pair, slice -> list[Pair]
        return self._pairs[index]

    @property
    def sequences(self) -> list[str]:
        """Sequence names in first-seen order."""
        return list(dict.fromkeys(pair.sequence for pair in self._pairs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} pairs, {len(self.sequences)} sequences)"


def _match_by_stem(sharp: list[Path], blurry: list[Path], where: str) -> list[tuple[str, Path, Path]]:
    """Pair files with the same stem; any file without a partner is an error naming them."""
    sharp_by_stem = {p.stem: p for p in sharp}
    blurry_by_stem = {p.stem: p for p in blurry}
    unpaired = sorted(set(sharp_by_stem) ^ set(blurry_by_stem))
    if unpaired:
        shown = ", ".join(unpaired[:5]) + (" ..." if len(unpaired) > 5 else "")
        raise ValueError(f"{where}: {len(unpaired)} frames have no sharp/blurry partner: {shown}")
    return [(stem, sharp_by_stem[stem], blurry_by_stem[stem]) for stem in sorted(sharp_by_stem)]


class GoproPairs(PairList):
    """GOPRO_Large: ``root/{train,test}/<sequence>/{sharp,blur,blur_gamma}/NNNNNN.png``.

    ``blur_folder`` picks "blur" (averaged in linear light, the usual choice) or "blur_gamma".
    """

    def __init__(self, root: str | os.PathLike, split: str, blur_folder: str = "blur") -> None:
        self.root = Path(root)
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: GOPRO split folder not found")
        sequences = sorted(p for p in split_dir.iterdir() if p.is_dir())
        if not sequences:
            raise FileNotFoundError(f"{split_dir}: no sequence folders in this GOPRO split")
        pairs = []
        for sequence in sequences:
            matched = _match_by_stem(list_images(sequence / "sharp"), list_images(sequence / blur_folder), str(sequence))
            pairs += [Pair(f"{sequence.name}/{stem}", sharp, blurry, sequence.name) for stem, sharp, blurry in matched]
        super().__init__(pairs)


class RealBlurPairs(PairList):
    """RealBlur-J from its list files ``root/RealBlur_J_{train,test}_list.txt`` ("gt_path blur_path" lines).

    The sequence of a pair is its scene folder (``.../scene123/gt/gt_1.png`` -> ``scene123``). Its
    frames (about 680x773, portrait) are used whole (``fit="whole"``), not cropped to 9:16.
    """

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        self.root = Path(root)
        list_file = self.root / f"RealBlur_J_{split}_list.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"{list_file}: RealBlur-J list file not found")
        pairs, missing = [], []
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{list_file}:{number}: expected 'gt_path blur_path', got {line.strip()!r}")
            sharp, blurry = self.root / fields[0], self.root / fields[1]
            missing += [str(p) for p in (sharp, blurry) if not p.is_file()]
            scene = Path(fields[0]).parent.parent.name or Path(fields[0]).parent.name
            pairs.append(Pair(f"{scene}/{Path(fields[1]).stem}", sharp, blurry, scene, fit="whole"))
        if missing:
            raise FileNotFoundError(f"{list_file}: {len(missing)} listed files are missing, first: {missing[0]}")
        if not pairs:
            raise ValueError(f"{list_file}: list file has no pairs")
        super().__init__(pairs)


class FolderPairs(PairList):
    """Two folders of frames matched by file stem (``sharp_dir/x.png`` with ``blurry_dir/x.jpg``).

    The sequence is the stem without its trailing frame number ("clip3_000012" -> "clip3"), so
    frames of one video stay together; names that are only a number all form one sequence.
    """

    def __init__(self, sharp_dir: str | os.PathLike, blurry_dir: str | os.PathLike) -> None:
        matched = _match_by_stem(list_images(sharp_dir), list_images(blurry_dir), f"{sharp_dir} vs {blurry_dir}")
        super().__init__(
            [Pair(stem, sharp, blurry, re.sub(r"[_\-. ]*\d+$", "", stem) or Path(sharp_dir).name) for stem, sharp, blurry in matched]
        )


def split_by_sequence(
    pairs: Sequence[Pair], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """Split into (train, val) by whole sequences, so near-identical neighbouring frames never leak.

    About ``val_fraction`` of the sequences (at least one when there are two or more and the
    fraction is positive, never all of them) go to validation, chosen by a seeded shuffle.
    """
    sequences = sorted({pair.sequence for pair in pairs})
    n_val = round(len(sequences) * val_fraction)
    if val_fraction > 0 and len(sequences) >= 2:
        n_val = min(max(n_val, 1), len(sequences) - 1)
    val_sequences = set(np.random.default_rng(seed).permutation(sequences)[:n_val].tolist()) if n_val else set()
    return [p for p in pairs if p.sequence not in val_sequences], [p for p in pairs if p.sequence in val_sequences]
