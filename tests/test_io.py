"""Image files <-> arrays <-> tensors, atomic writes and clear errors for bad files."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image, ImageOps

import helpers.io
from helpers.io import (
    DEFAULT_MAX_PIXELS, ImageReadError, describe_content, image_to_tensor, list_images, read_image, read_image_any, tensor_to_image, write_image,
)
from helpers.safe_writes import DestinationBusyError, atomic_path

ORIENTATION_TAG = 0x0112


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_formats_round_trip_in_rgb_order(tmp_path, suffix: str) -> None:
    image = skimage.data.coffee()[:64, :96]
    path = write_image(tmp_path / f"coffee{suffix}", image)
    if suffix == ".webp":  # OpenCV writes lossy WebP by default
        assert np.abs(read_image(path).astype(int) - image).mean() < 6
    else:
        np.testing.assert_array_equal(read_image(path), image)


def test_jpeg_keeps_channel_order(tmp_path) -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 255  # pure red
    decoded = read_image(write_image(tmp_path / "red.jpg", image))
    assert decoded[..., 0].mean() > 240 and decoded[..., 2].mean() < 15


def test_grey_rgba_and_16_bit_images_become_rgb_uint8(tmp_path) -> None:
    grey = skimage.data.camera()[:40, :40]
    rgba = np.dstack([skimage.data.coffee()[:40, :40], np.full((40, 40), 7, np.uint8)])
    deep = (skimage.data.coffee()[:40, :40].astype(np.uint16) * 257)
    write_image(tmp_path / "grey.png", grey)
    write_image(tmp_path / "rgba.png", rgba)
    write_image(tmp_path / "deep.png", deep)
    assert read_image_any(tmp_path / "grey.png").shape == (40, 40)
    np.testing.assert_array_equal(read_image_any(tmp_path / "rgba.png"), rgba)
    assert read_image_any(tmp_path / "deep.png").dtype == np.uint16
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), skimage.data.coffee()[:40, :40])


def test_bad_files_raise_errors_naming_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png: not a readable image"):
        read_image(tmp_path / "notes.png")
    good = write_image(tmp_path / "good.png", skimage.data.coffee())
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:500])
    with pytest.raises(ImageReadError, match="truncated.png"):
        read_image(tmp_path / "truncated.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        read_image(tmp_path / "empty.png")


def test_list_images_errors_for_missing_and_empty_folders(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: folder not found"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path)
    write_image(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
    write_image(tmp_path / "a.JPG", np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]


def test_failed_write_leaves_previous_file_and_no_temp_files(tmp_path, monkeypatch) -> None:
    target = write_image(tmp_path / "out.png", np.full((8, 8, 3), 10, np.uint8))
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("disk full")
    np.testing.assert_array_equal(read_image(target), np.full((8, 8, 3), 10, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_tensor_conversions_round_trip_exactly() -> None:
    image = skimage.data.astronaut()[:50, :70]
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 3, 50, 70) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1
    np.testing.assert_array_equal(tensor_to_image(tensor[0]), image)
    assert tensor_to_image(tensor).shape == (1, 50, 70, 3)
    assert image_to_tensor(np.stack([image, image])).shape == (2, 3, 50, 70)
    with pytest.raises(ValueError, match="uint8"):
        image_to_tensor(image.astype(np.float32))
    with pytest.raises(ValueError, match="RGB image"):
        image_to_tensor(image[..., :2])


def test_written_files_get_the_usual_permissions(tmp_path) -> None:
    reference = tmp_path / "reference.txt"
    reference.write_text("x")
    written = write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    assert written.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


# ----------------------------------------------------------------------------- hostile files


def png_with_header(path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height but whose pixel data is a few bytes: a decompression-bomb
    header without the bomb (decoding it for real would need width * height * 3 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if OpenCV is asked to decode or the whole file is read into memory."""

    def refuse(*args, **kwargs):
        raise AssertionError("the file was read or decoded before its header was checked")

    monkeypatch.setattr(helpers.io.cv2, "imdecode", refuse)
    monkeypatch.setattr(helpers.io.np, "fromfile", refuse)


@pytest.mark.parametrize("side", [10000, 30000, 60000])
def test_decompression_bomb_is_refused_from_its_header(tmp_path, no_decoding, side) -> None:
    bomb = png_with_header(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageReadError) as error:
        read_image(bomb)
    message = str(error.value)
    # above Pillow's own ceiling (179 MP) its header parser refuses first, naming the pixel count
    size = f"{side}x{side} pixels" if side * side < 2 * Image.MAX_IMAGE_PIXELS else f"{side * side} pixels"
    assert str(bomb) in message and size in message and "limit" in message and "refused before decoding" in message
    assert "\n" not in message


def test_pixel_limit_lets_8k_photos_pass_and_can_be_changed(tmp_path) -> None:
    assert DEFAULT_MAX_PIXELS >= 7680 * 4320  # an 8K UHD frame
    image = skimage.data.coffee()[:64, :96]
    path = write_image(tmp_path / "small.png", image)
    np.testing.assert_array_equal(read_image(path, max_pixels=64 * 96), image)
    with pytest.raises(ImageReadError, match=r"small.png: image of 96x64 pixels .* limit of 6,143 pixels"):
        read_image(path, max_pixels=64 * 96 - 1)


def test_sparse_file_is_refused_before_it_is_read(tmp_path, no_decoding) -> None:
    with_header = png_with_header(tmp_path / "huge.png", 64, 48)
    os.truncate(with_header, 8 * 2**30)  # 8 GiB, sparse: no disk space used
    with pytest.raises(ImageReadError, match=r"huge.png: 8.0 GiB .* more than an image of 64x48 pixels"):
        read_image(with_header)
    zeros = tmp_path / "zeros.png"
    zeros.touch()
    os.truncate(zeros, 8 * 2**30)
    with pytest.raises(ImageReadError, match="zeros.png: not a readable image"):
        read_image(zeros)


def jpeg_bytes_with_orientation(image: np.ndarray, orientation: int, suffix: str) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    options = {"quality": 95} if suffix == ".jpg" else {}
    Image.fromarray(image).save(buffer, format={".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[suffix], exif=exif.tobytes(), **options)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow_does(tmp_path, suffix, orientation) -> None:
    image = skimage.data.astronaut()[100:148, 150:214]  # 48 x 64, not symmetric
    path = tmp_path / f"oriented{suffix}"
    path.write_bytes(jpeg_bytes_with_orientation(image, orientation, suffix))
    with Image.open(path) as stored:
        expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))  # how viewers show it
    decoded = read_image(path)
    assert decoded.shape == expected.shape
    if suffix == ".jpg":  # two JPEG decoders: within rounding, same geometry
        assert np.abs(decoded.astype(int) - expected).mean() < 1.5
    else:
        np.testing.assert_array_equal(decoded, expected)


def test_listing_skips_hidden_files_and_our_partial_files_but_not_a_users_partial_name(tmp_path) -> None:
    for name in ["a.png", ".b.x1y2z3w4.partial.png", ".hidden.png", "c.partial.png", "d.jpg"]:
        write_image(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "c.partial.png", "d.jpg"]


def test_stale_partial_files_of_a_destination_are_removed_on_its_next_write(tmp_path) -> None:
    stale = [tmp_path / ".out.k3j_9x2a.partial.png", tmp_path / ".last.0a1b2c3d.partial.pt"]
    others = [tmp_path / ".other.k3j_9x2a.partial.png", tmp_path / "notes.partial.txt", tmp_path / ".out.png.bak"]
    for path in stale + others:
        path.write_bytes(b"")
    write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    with atomic_path(tmp_path / "last.pt") as temp:
        temp.write_bytes(b"checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.png", "last.pt"] + [p.name for p in others])


def test_tensor_to_image_in_row_blocks_matches_a_whole_conversion() -> None:
    torch.manual_seed(0)
    tensor = torch.rand(2, 3, 2 * helpers.io.CONVERSION_ROWS + 37, 19) * 1.4 - 0.2  # some values outside [0, 1]
    expected = np.clip(np.rint(tensor.permute(0, 2, 3, 1).numpy().astype(np.float64) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tensor_to_image(tensor), expected)
    np.testing.assert_array_equal(tensor_to_image(tensor[1]), expected[1])


def test_reading_in_threads_leaves_the_process_warning_filters_alone(tmp_path) -> None:
    """Caches decode frames in threads; a catch_warnings block there once left a filter that silenced every
    warning of the process behind (its save/restore of the global filters interleaved between threads)."""
    good = write_image(tmp_path / "good.png", np.zeros((36, 64, 3), np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG truncated")

    def read(path: Path) -> None:
        with pytest.raises(ImageReadError) if path == bad else contextlib.nullcontext():
            read_image(path)

    before = list(warnings.filters)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(read, [good, bad] * 200))
    assert warnings.filters == before


def test_file_content_is_named_from_its_first_bytes(tmp_path) -> None:
    found = {}
    for suffix, fourcc in [(".mp4", "mp4v"), (".avi", "MJPG"), (".mkv", "mp4v")]:
        writer = cv2.VideoWriter(str(tmp_path / f"clip{suffix}"), cv2.VideoWriter_fourcc(*fourcc), 10.0, (32, 24))
        writer.write(np.zeros((24, 32, 3), np.uint8))
        writer.release()
        found[suffix] = describe_content(tmp_path / f"clip{suffix}")
    found[".jpg"] = describe_content(write_image(tmp_path / "photo.jpg", np.zeros((8, 8, 3), np.uint8)))
    (tmp_path / "notes.txt").write_text("hello")
    found[".txt"] = describe_content(tmp_path / "notes.txt")
    assert found == {".mp4": "an MP4/MOV video", ".avi": "an AVI video", ".mkv": "a Matroska video",
                     ".jpg": "a JPEG image", ".txt": None}


# ----------------------------------------------------------------------------- issue 28: one writer at a time


HOLD_LOCK = """
import sys, time
from helpers.safe_writes import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_holder_and_the_lock_dies_with_it(tmp_path) -> None:
    import subprocess
    import sys

    target = tmp_path / "clip.mp4"
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(target)], stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = rf"clip\.mp4: another process \(PID {holder.pid}\) is writing it"
        with pytest.raises(DestinationBusyError, match=busy), atomic_path(target) as temp:
            temp.write_bytes(b"second")
        assert not target.exists() and (tmp_path / ".clip.mp4.lock").exists()
    finally:
        holder.kill()
        holder.wait()
    with atomic_path(target) as temp:  # the lock died with its process, however it ended
        temp.write_bytes(b"mine")
    assert target.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_heic_and_avif_files_are_images_not_mp4_videos(tmp_path) -> None:
    for brand, name in ((b"heic", "HEIC"), (b"mif1", "HEIF"), (b"avif", "AVIF")):
        head = b"\0\0\0\x18ftyp" + brand + b"\0\0\0\0"
        assert helpers.io.video_container(head) is None
        (tmp_path / "x.bin").write_bytes(head + bytes(32))
        assert describe_content(tmp_path / "x.bin") == f"a {name} image"
    assert helpers.io.video_container(b"\0\0\0\x18ftypisom\0\0\0\0") == "MP4/MOV"


def test_odd_frame_sizes_are_padded_to_even_sizes_the_encoder_keeps(tmp_path) -> None:
    with helpers.io.video_writer(tmp_path / "odd.mp4", 10, 7, 5) as write:
        write(np.full((5, 7, 3), 100, np.uint8))
    capture = cv2.VideoCapture(str(tmp_path / "odd.mp4"))
    ok, written = capture.read()
    capture.release()
    assert ok and written.shape == (6, 8, 3) and helpers.io.encoded_size(7, 5) == (8, 6)


def test_a_file_system_without_locks_still_gets_its_writes(tmp_path, monkeypatch) -> None:
    import errno
    import fcntl

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")  # what some network and FUSE mounts answer

    monkeypatch.setattr(fcntl, "flock", no_locks)
    write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
