"""Preprocessed frames, decoded per call or once into a uint8 cache on local disk.

Decoding a 1280x720 PNG per training sample starves a GPU on Colab's two CPU cores, so
``FrameCache`` decodes and preprocesses every frame once into raw uint8 files read through
``np.memmap``; a random patch then costs a few page reads instead of a PNG decode.
``DecodedFrames`` has the same interface and decodes on every access (no disk space needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
from tqdm.auto import tqdm

from helpers.degrade import FrameFit, downscale, resize_to_frame
from helpers.io import ImageReadError, read_image

FRAME_LONG, FRAME_SHORT = 640, 360  # network input frames: 640x360 landscape, 360x640 portrait
HIGH_RES_SCALE = 2  # targets of the cascade (EDSR's output) are 2x: 1280x720
CACHE_VERSION = 1
_BUILD_CHUNK = 16  # frames decoded concurrently while building; bounds memory use


def load_frame(path: str | os.PathLike, scale: int, fit: FrameFit = "crop") -> np.ndarray:
    """Read an image and preprocess it into a uint8 frame: scale 2 -> 1280x720, scale 1 -> 640x360.

    The 1280x720 frame is made first (``resize_to_frame``: centre crop to 16:9 or 9:16, portrait
    kept portrait) and the 640x360 frame is its antialiased 2x downscale, so low- and high-res
    frames of a photo always correspond exactly (what super-resolution training needs).
    ``fit="whole"`` keeps the whole frame instead (long side 1280 / 640, aspect kept; RealBlur).
    """
    if scale not in (1, HIGH_RES_SCALE):
        raise ValueError(f"scale must be 1 (640x360) or {HIGH_RES_SCALE} (1280x720), got {scale}")
    # Resized as uint8 (OpenCV rounds): a float round trip would cost more than the PNG decode.
    frame = resize_to_frame(read_image(path), FRAME_LONG * HIGH_RES_SCALE, FRAME_SHORT * HIGH_RES_SCALE, fit)
    return frame if scale == HIGH_RES_SCALE else downscale(frame, HIGH_RES_SCALE // scale)


class DecodedFrames:
    """Frames decoded from their files on every access. Unreadable files surface as ImageReadError."""

    def __init__(self, files: Sequence[str | os.PathLike], scale: int, fit: FrameFit = "crop") -> None:
        self.files = [Path(f) for f in files]
        self.scale, self.fit = scale, fit
        self.readable = np.ones(len(self.files), dtype=bool)  # known only lazily, on access

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        return load_frame(self.files[index], self.scale, self.fit)


def default_cache_dir() -> Path:
    """Where generated data lives: $IMAGE_REPAIR_CACHE or ~/.cache/image-repair-and-restoration."""
    return Path(os.environ.get("IMAGE_REPAIR_CACHE") or Path.home() / ".cache" / "image-repair-and-restoration")


def _file_signature(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class FrameCache:
    """The frames of ``files`` at one scale, preprocessed once into uint8 arrays under ``cache_dir``.

    Layout: ``cache_dir/<name>-<hash of the file list>-x<scale>/`` holds one raw uint8 file per
    frame shape (``frames_640x360.u8``, ``frames_360x640.u8`` for portrait frames) and
    ``manifest.json`` (source files with sizes and mtimes, which array and row holds each frame,
    array shapes; ``fit`` as ``load_frame``'s, "whole" frames giving one array per frame size). The build goes to a temporary folder renamed into place, manifest written last.
    On opening, a changed source (size or mtime), a missing manifest, or a missing or wrong-sized
    array file triggers a rebuild with a warning; a cache is never used unchecked. Files that
    cannot be decoded are skipped with a warning and marked in ``readable``.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        scale: int,
        cache_dir: str | os.PathLike,
        name: str = "frames",
        progress: bool = True,
        fit: FrameFit = "crop",
    ) -> None:
        self.files = [Path(f).resolve() for f in files]
        if not self.files:
            raise ValueError("FrameCache needs at least one file")
        self.scale, self.fit = scale, fit
        listing = "\n".join(map(str, self.files)) + ("" if fit == "crop" else f"\nfit={fit}")
        key = hashlib.sha1(listing.encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"{name}-{key}-x{scale}"
        problem = self._check()
        if problem is not None:
            if self.path.exists():
                warnings.warn(f"{self.path}: cache {problem}; rebuilding", stacklevel=2)
            self._build(name, progress)
            problem = self._check()
            if problem is not None:
                raise RuntimeError(f"{self.path}: freshly built cache failed its check ({problem})")
        manifest = json.loads((self.path / "manifest.json").read_text())
        self._rows = [(frame.get("array"), frame.get("row")) for frame in manifest["frames"]]
        self._shapes = {array: tuple(info["shape"]) for array, info in manifest["arrays"].items()}
        self.readable = np.array([array is not None for array, _ in self._rows], dtype=bool)
        self._arrays: dict[str, np.memmap] = {}

    def _check(self) -> str | None:
        """None when the cache on disk is complete and matches the sources, else what is wrong."""
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            return "has no manifest (missing or interrupted build)"
        try:
            manifest = json.loads(manifest_path.read_text())
            if (manifest.get("version"), manifest.get("scale"), manifest.get("fit", "crop")) != (CACHE_VERSION, self.scale, self.fit):
                return "was written by another version"
            recorded = [{k: frame[k] for k in ("path", "bytes", "mtime_ns")} for frame in manifest["frames"]]
            if recorded != [_file_signature(path) for path in self.files]:
                return "is stale (source files changed)"
            for array, info in manifest["arrays"].items():
                expected = int(np.prod(info["shape"]))
                actual = (self.path / array).stat().st_size if (self.path / array).is_file() else -1
                if actual != expected:
                    return f"is corrupt ({array}: {actual} bytes, expected {expected})"
        except FileNotFoundError as error:
            return f"is stale (source file missing: {error.filename})"
        except (ValueError, KeyError, TypeError) as error:
            return f"has an unreadable manifest ({error})"
        return None

    def _build(self, name: str, progress: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        handles: dict[str, BinaryIO] = {}
        try:
            frames, counts, skipped = [], {}, []

            def decode(path: Path) -> np.ndarray | str:
                try:
                    return load_frame(path, self.scale, self.fit)
                except ImageReadError as error:
                    return str(error)

            # Threads: OpenCV decodes and resizes without holding the GIL, so two cores both work.
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, tqdm(
                total=len(self.files), desc=f"caching {name} x{self.scale}", unit="frame", disable=not progress
            ) as bar:
                for start in range(0, len(self.files), _BUILD_CHUNK):
                    chunk = self.files[start : start + _BUILD_CHUNK]
                    for path, frame in zip(chunk, pool.map(decode, chunk)):
                        signature = _file_signature(path)
                        if isinstance(frame, str):
                            skipped.append(frame)
                            frames.append(signature)
                        else:
                            array = f"frames_{frame.shape[1]}x{frame.shape[0]}.u8"
                            if array not in handles:
                                handles[array] = open(temp / array, "wb")
                            handles[array].write(np.ascontiguousarray(frame).tobytes())
                            frames.append({**signature, "array": array, "row": counts.get(array, 0)})
                            counts[array] = counts.get(array, 0) + 1
                        bar.update()
            for handle in handles.values():
                handle.close()
            arrays = {}
            for array, count in counts.items():
                width, height = (int(v) for v in array[len("frames_") : -len(".u8")].split("x"))
                arrays[array] = {"shape": [count, height, width, 3]}
            if skipped:
                warnings.warn(
                    f"skipped {len(skipped)} of {len(self.files)} unreadable frames; first: {skipped[0]}",
                    stacklevel=3,
                )
            manifest = {"version": CACHE_VERSION, "scale": self.scale, "fit": self.fit, "frames": frames, "arrays": arrays}
            (temp / "manifest.json").write_text(json.dumps(manifest))
            if self.path.exists():
                shutil.rmtree(self.path)
            os.replace(temp, self.path)
        finally:
            for handle in handles.values():
                handle.close()
            shutil.rmtree(temp, ignore_errors=True)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index`` as a read-only uint8 (H, W, 3) view; slicing it reads only those rows."""
        array, row = self._rows[index]
        if array is None:
            raise ImageReadError(f"{self.files[index]}: not a readable image (skipped when the cache was built)")
        if array not in self._arrays:  # opened lazily so each DataLoader worker maps its own copy
            self._arrays[array] = np.memmap(self.path / array, dtype=np.uint8, mode="r", shape=self._shapes[array])
        return self._arrays[array][row]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": {}}
