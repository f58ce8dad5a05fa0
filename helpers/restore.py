"""Restore image files, folders of images and videos with the cascade (``python -m helpers restore``).

Output naming: one input file -> OUT is the output file (or an existing folder to write into); several
inputs or a folder -> OUT is a folder and each output keeps its input's file name (videos become
``<stem>.mp4``, mp4v codec, same frame rate, no audio). A file that fails is reported on one line,
skipped and counted; the exit code is 1 when any failed, 2 when the cascade could not be set up.
``--skip-existing`` keeps outputs that exist (an interrupted batch resumes; they count as skipped).
Ctrl-C or SIGTERM stops a batch with one line (``RestoreInterrupted``): the file in progress leaves no
partial output, and the line counts the finished files and names ``--skip-existing``.

What a file is, is decided by its content (an image named .mp4 or a HEIC named .jpg is refused, naming
what it is); folders contribute their image files, not hidden ones (this program's temporary files are
hidden). Images above ``--max-pixels`` are refused from their header, before anything is decoded; videos
must decode every frame their container announces. An animated image (GIF, WebP, APNG) is restored as its
first frame, with a note. An odd-sized video frame is padded to even (the MP4 encoder needs it), with a note.

Pixel formats: grey images are restored as RGB and written back grey; images with transparency (RGBA,
grey+alpha, palette with transparency) keep their alpha, resized bilinearly to the output size, and are
written RGBA (grey+alpha as grey colour channels; dropped, with a note, for JPEG outputs); palette images
without transparency become RGB; 16-bit images are restored at 8-bit precision and written back 16-bit
(PNG/TIFF outputs) or 8-bit (other formats).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from tqdm.auto import tqdm

from .io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    is_image_file,
    is_video_file,
    encoded_size,
    list_images,
    read_image_any,
    read_image_header,
    read_video_frames,
    to_rgb_uint8,
    video_writer,
    write_image,
)
from .pipeline import Restorer

__all__ = ["RestoreInterrupted", "restore_files", "restore_image_file", "restore_video_file", "plan_outputs"]

HIGH_DEPTH_SUFFIXES = (".png", ".tif", ".tiff")  # formats OpenCV writes at 16 bits per channel
NO_ALPHA_SUFFIXES = (".jpg", ".jpeg")
# tqdm's default shows "s/frame" below one frame per second; videos always show frames per second
VIDEO_PROGRESS = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"


class RestoreInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped ``restore_files``: the file in progress (its partial output removed) and the counts."""

    def __init__(self, current: Path, restored: int, skipped: int, interrupt: KeyboardInterrupt) -> None:
        super().__init__(
            f"interrupted while restoring {current} (its partial output removed); {restored + skipped} files finished "
            f"({restored} restored, {skipped} kept); run the same command with --skip-existing to go on"
        )
        self.current, self.restored, self.skipped, self.interrupt = current, restored, skipped, interrupt


def _error_line(error: BaseException, *paths: Path) -> str:
    """One line naming the file and the problem; the first path is added unless the message names one already."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message if any(str(path) in message for path in paths) else f"{paths[0]}: {message}"


def _expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files to restore (folders expanded to their images) and one error line per unusable input."""
    files, errors = [], []
    for name in inputs:
        path = Path(name)
        try:
            if path.is_dir():
                files += list_images(path)
            elif not path.exists():
                raise FileNotFoundError(f"{path}: not found")
            elif is_image_file(path) or is_video_file(path):
                files.append(path)
            else:
                raise ValueError(
                    f"{path}: unsupported file type {path.suffix!r} "
                    f"(images: {' '.join(IMAGE_SUFFIXES)}; videos: {' '.join(VIDEO_SUFFIXES)})"
                )
        except (OSError, ValueError) as error:
            errors.append(_error_line(error, path))
    return files, errors


def plan_outputs(inputs: list[str], files: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """(source, destination) pairs: OUT is the file for a single input file, else a folder of same-named outputs."""
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir() and not output.is_dir()
    if single:
        return [(source, output) for source in files]
    return [(source, output / (f"{source.stem}.mp4" if is_video_file(source) else source.name)) for source in files]


def _check_destination(source: Path, destination: Path, overwrite: bool, skip_existing: bool, planned: set[Path]) -> bool:
    """Refuse to replace the input, an output of this run, or an existing file without --overwrite.

    Returns False for an existing output kept by ``skip_existing``, True when the output is to be written.
    """
    expected = (".mp4",) if is_video_file(source) else IMAGE_SUFFIXES
    if destination.suffix.lower() not in expected:
        raise ValueError(f"{destination}: output suffix must be one of {' '.join(expected)} for {source}")
    if destination.resolve() == source.resolve():
        raise ValueError(f"{destination}: output would replace its input")
    if destination.resolve() in planned:
        raise ValueError(f"{destination}: another input of this run already writes this output")
    if destination.exists() and not overwrite:
        if skip_existing:
            return False
        raise FileExistsError(f"{destination}: output exists (use --overwrite to replace it, or --skip-existing to keep it)")
    return True


def _match_format(restored: np.ndarray, original: np.ndarray, destination: Path) -> np.ndarray:
    """Give the restored RGB uint8 image the original's layout: grey, alpha (resized) and 16-bit where possible."""
    height, width = restored.shape[:2]
    high_depth = original.dtype == np.uint16 and destination.suffix.lower() in HIGH_DEPTH_SUFFIXES
    image = cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY) if original.ndim == 2 else restored
    if _is_grey_with_alpha(original):  # OpenCV writes no grey+alpha files: grey colour channels beside the alpha
        image = cv2.cvtColor(cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    if high_depth:
        image = image.astype(np.uint16) * 257  # exact 8 -> 16 bit map (255 -> 65535)
    if original.ndim == 3 and original.shape[2] == 4:
        if destination.suffix.lower() in NO_ALPHA_SUFFIXES:
            tqdm.write(f"note: {destination}: JPEG has no alpha channel; transparency dropped")
            return image
        alpha = cv2.resize(original[:, :, 3], (width, height), interpolation=cv2.INTER_LINEAR)
        if original.dtype == np.uint16 and not high_depth:
            alpha = np.round(alpha / 257.0).astype(np.uint8)
        image = np.dstack([image, alpha])
    return image


def _is_grey_with_alpha(image: np.ndarray) -> bool:
    """An RGBA array whose colour channels are equal: how OpenCV decodes a grey+alpha image."""
    if image.ndim != 3 or image.shape[2] != 4:
        return False
    return np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])


def restore_image_file(restorer: Restorer, source: Path, destination: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Read, restore and atomically write one image, keeping its pixel format (see module docstring)."""
    header = read_image_header(source, max_pixels)
    if header.animated:
        tqdm.write(f"note: {source}: an animated {header.format}; only its first frame is restored")
    original = read_image_any(source, max_pixels)
    restored = restorer.restore(to_rgb_uint8(original))
    write_image(destination, _match_format(restored, original, destination))


def restore_video_file(restorer: Restorer, source: Path, destination: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Restore a video into an MP4 (mp4v) at the same frame rate, written atomically; frames in flight
    (``Restorer.restore_frames``), the progress bar counting frames per second.

    Fails (nothing published) when fewer frames decode than an exact container count announces, or when
    the written file does not read back whole; warns when the count was only the container's estimate.
    """
    frames = read_video_frames(source, max_pixels)
    restorer.check_input_size(frames.height, frames.width)
    scale = restorer.scale
    width, height = frames.width * scale, frames.height * scale
    if encoded_size(width, height) != (width, height):
        tqdm.write(f"note: {destination}: {width}x{height} frames are written as {'x'.join(map(str, encoded_size(width, height)))} "
                   "(the MP4 encoder needs even sizes; the last column or row is repeated)")
    with video_writer(destination, frames.fps, frames.width * scale, frames.height * scale) as write, tqdm(
        total=frames.frame_count or None, unit="frame", desc=source.name, leave=False, bar_format=VIDEO_PROGRESS
    ) as progress:
        for frame in restorer.restore_frames(frames):
            write(frame)
            progress.update()
    if shortfall := frames.shortfall():
        tqdm.write(f"warning: {shortfall}; the restored video has {frames.decoded} frames", file=sys.stderr)
    tqdm.write(f"note: {destination}: audio is not carried over (frames only)")


def restore_files(
    restorer: Restorer,
    inputs: Sequence[str | Path],
    output: Path,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]], list[str]]:
    """Restore image files, folders and videos as ``restore`` does (naming: ``plan_outputs``).

    Returns the (source, output) pairs written, those skipped because the output exists (``skip_existing``)
    and one error line per input that failed (named file, the problem); a bad file never stops the others.
    KeyboardInterrupt (Ctrl-C; the command turns SIGTERM into one) becomes RestoreInterrupted, once the file in
    progress has left no partial output. Used by the command and by notebook 05.
    """
    names = [str(name) for name in inputs]
    files, errors = _expand_inputs(names)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    restored, skipped, planned = [], [], set()
    with tqdm(plan_outputs(names, files, output), unit="file", desc="restore") as pairs:
        for source, destination in pairs:
            try:
                write = _check_destination(source, destination, overwrite, skip_existing, planned)
                planned.add(destination.resolve())
                if not write:
                    skipped.append((source, destination))
                    continue
                restore = restore_video_file if is_video_file(source) else restore_image_file
                restore(restorer, source, destination, max_pixels)
                restored.append((source, destination))
            except KeyboardInterrupt as interrupt:  # atomic_path has removed the partial output on the way out
                raise RestoreInterrupted(source, len(restored), len(skipped), interrupt) from None
            except Exception as error:  # one bad file must not stop the batch; it is reported and counted
                errors.append(_error_line(error, source, destination))
                tqdm.write(f"error: {errors[-1]}", file=sys.stderr)
    return restored, skipped, errors
