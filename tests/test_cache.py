"""FrameCache: identical frames to decoding, rebuilt on source change and on corruption."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers.cache import DecodedFrames, FrameCache, load_frame
from helpers.data import GoproPairs
from helpers.io import write_image


@pytest.fixture
def sharp_files(gopro_root: Path) -> list[Path]:
    return [pair.sharp for pair in GoproPairs(gopro_root, "train")]


@pytest.mark.parametrize("scale", [1, 2])
def test_cached_frames_equal_decoded_frames(sharp_files: list[Path], tmp_path: Path, scale: int) -> None:
    cache = FrameCache(sharp_files, scale, tmp_path / "cache")
    decoded = DecodedFrames(sharp_files, scale)
    assert len(cache) == len(decoded) == len(sharp_files) and cache.readable.all()
    for index in range(len(cache)):
        np.testing.assert_array_equal(cache[index], decoded[index])
    assert cache[0].shape == ((360, 640, 3) if scale == 1 else (720, 1280, 3)) and cache[0].dtype == np.uint8
    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert manifest["arrays"] == {f"frames_{640 * scale}x{360 * scale}.u8": {"shape": [8, 360 * scale, 640 * scale, 3]}}


def test_second_open_reuses_the_cache(sharp_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = FrameCache(sharp_files, 1, tmp_path)
    monkeypatch.setattr(FrameCache, "_build", lambda *a: pytest.fail("rebuilt a valid cache"))
    np.testing.assert_array_equal(FrameCache(sharp_files, 1, tmp_path)[3], first[3])


def test_portrait_and_landscape_frames_share_a_cache(tmp_path: Path) -> None:
    files = [tmp_path / "wide.png", tmp_path / "tall.png"]
    write_image(files[0], np.full((90, 160, 3), 10, np.uint8))
    write_image(files[1], np.full((160, 90, 3), 20, np.uint8))
    cache = FrameCache(files, 1, tmp_path / "cache")
    assert cache[0].shape == (360, 640, 3) and cache[1].shape == (640, 360, 3)
    assert cache[1].min() == cache[1].max() == 20


def test_changed_source_triggers_rebuild(sharp_files: list[Path], tmp_path: Path) -> None:
    FrameCache(sharp_files, 1, tmp_path)
    write_image(sharp_files[5], np.full((72, 128, 3), 77, np.uint8))
    os.utime(sharp_files[5], ns=(1, 1))  # a different mtime even on coarse-clock file systems
    with pytest.warns(UserWarning, match="stale"):
        cache = FrameCache(sharp_files, 1, tmp_path)
    assert cache[5].min() == cache[5].max() == 77


@pytest.mark.parametrize("damage", ["truncate", "delete_array", "delete_manifest", "garble_manifest"])
def test_corrupt_cache_is_detected_and_rebuilt(sharp_files: list[Path], tmp_path: Path, damage: str) -> None:
    cache = FrameCache(sharp_files, 1, tmp_path)
    expected = np.array(cache[7])
    array = cache.path / "frames_640x360.u8"
    manifest = cache.path / "manifest.json"
    if damage == "truncate":
        os.truncate(array, array.stat().st_size - 1000)
    elif damage == "delete_array":
        array.unlink()
    elif damage == "delete_manifest":
        manifest.unlink()
    else:
        manifest.write_text("{ not json")
    with pytest.warns(UserWarning, match="corrupt|manifest"):
        rebuilt = FrameCache(sharp_files, 1, tmp_path)
    np.testing.assert_array_equal(rebuilt[7], expected)
    assert array.stat().st_size == 8 * 360 * 640 * 3


def test_interrupted_build_leaves_no_cache(sharp_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_load(path: Path, scale: int, fit: str = "crop") -> np.ndarray:
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return load_frame(path, scale, fit)

    monkeypatch.setattr("helpers.cache.load_frame", failing_load)
    with pytest.raises(KeyboardInterrupt):
        FrameCache(sharp_files, 1, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # neither a half-built cache nor its temporary folder


def test_missing_source_is_an_error(sharp_files: list[Path], tmp_path: Path) -> None:
    sharp_files[2].unlink()
    with pytest.raises(FileNotFoundError, match=str(sharp_files[2].name)):
        FrameCache(sharp_files, 1, tmp_path)


def test_load_frame_validates_scale(sharp_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="scale"):
        load_frame(sharp_files[0], 3)
