"""Image files <-> arrays <-> tensors, atomic writes and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from helpers.io import (
    ImageReadError, atomic_path, image_to_tensor, list_images, read_image, read_image_any, tensor_to_image, write_image,
)


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
