"""``python -m helpers restore``: every input kind, every bad input, pixel formats, overwrite, exit codes, atomic writes."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.transform
from PIL import Image

import helpers.io
from helpers.commands import main
from helpers.io import DEFAULT_MAX_PIXELS, read_image, read_image_any, write_image
from helpers.pipeline import Restorer
from helpers.restore import restore_files
from hostile import mjpeg_avi
from test_io import png_with_header
from test_pipeline import max_difference, photo, save_networks, small_networks


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return save_networks(small_networks(), tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def reference(weights_dir) -> Restorer:
    """The pipeline the CLI should run, for expected pixels."""
    return Restorer.from_weights(weights_dir, device="cpu", fp32=True)


@pytest.fixture
def restore(weights_dir):
    """Run the command in-process with the test weights on CPU in float32; returns the exit code."""

    def run(*args: str | Path) -> int:
        return main(["restore", *map(str, args), "--weights", str(weights_dir), "--device", "cpu", "--fp32"])

    return run


def write_video(path: Path, frames: int, fps: float = 12.0, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """A short mp4v clip written directly with OpenCV (independent of helpers.io); returns the RGB frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    source = photo(size[1] + 2 * frames, size[0] + 2 * frames)
    clip = [np.ascontiguousarray(source[2 * index : 2 * index + size[1], 2 * index : 2 * index + size[0]]) for index in range(frames)]
    for frame in clip:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return clip


def decode_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, fps


def leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted write would leave."""
    return sorted(path.name for path in folder.rglob("*") if ".partial" in path.name)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_each_image_format(restore, reference, tmp_path, capsys, suffix):
    source = write_image(tmp_path / f"in{suffix}", photo(40, 56))
    assert restore(source, "-o", tmp_path / f"out{suffix}") == 0
    restored, expected = read_image(tmp_path / f"out{suffix}"), reference.restore(read_image(source))
    assert restored.shape == (80, 112, 3)
    # lossy formats: the same encoder applied to the expected pixels gives the same file
    assert np.array_equal(restored, read_image(write_image(tmp_path / f"expected{suffix}", expected)))
    assert "restored 1, failed 0" in capsys.readouterr().out


def test_folder_and_several_inputs_write_same_names_into_a_folder(restore, tmp_path, capsys):
    folder = tmp_path / "photos"
    write_image(folder / "a.png", photo(40, 56))
    write_image(folder / "b.jpg", photo(36, 44, "astronaut"))
    (folder / "notes.txt").write_text("not an image")
    extra = write_image(tmp_path / "c.bmp", photo(24, 24))
    assert restore(folder, extra, "-o", tmp_path / "out") == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg", "c.bmp"]
    assert read_image(tmp_path / "out" / "b.jpg").shape == (72, 88, 3)
    assert "restored 3, failed 0" in capsys.readouterr().out


def test_videos_keep_frame_count_and_rate_at_twice_the_size(restore, reference, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", frames=5)
    write_video(tmp_path / "other.avi", frames=3, fps=8.0)
    assert restore(tmp_path / "clip.mp4", tmp_path / "other.avi", "-o", tmp_path / "out") == 0
    frames, fps = decode_video(tmp_path / "out" / "clip.mp4")
    assert len(frames) == 5 and fps == pytest.approx(12.0) and frames[0].shape == (96, 128, 3)
    decoded_input, _ = decode_video(tmp_path / "clip.mp4")
    assert np.abs(frames[2].astype(int) - reference.restore(decoded_input[2])).mean() < 12  # mp4v's loss only
    assert max_difference(decoded_input[2], clip[2]) > 0  # (the input itself went through the codec)
    other, other_fps = decode_video(tmp_path / "out" / "other.mp4")
    assert len(other) == 3 and other_fps == pytest.approx(8.0)
    captured = capsys.readouterr()
    assert "audio is not carried over" in captured.out + captured.err
    assert "restored 2, failed 0" in captured.out


def test_bad_inputs_are_reported_skipped_and_counted(restore, tmp_path, capsys):
    good = write_image(tmp_path / "good.png", photo(32, 32))
    (tmp_path / "empty").mkdir()
    valid = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(valid[: len(valid) // 2])
    (tmp_path / "text.png").write_text("this is not a PNG")
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    write_image(tmp_path / "tiny.png", photo(8, 8))
    (tmp_path / "notes.txt").write_text("hello")
    bad = ["missing.png", "empty", "truncated.png", "text.png", "broken.mp4", "tiny.png", "notes.txt"]
    code = restore(good, *[tmp_path / name for name in bad], "-o", tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 1
    assert "restored 1, failed 7" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 7
    for name, problem in zip(bad, ["not found", "no images", "not a readable image", "not a readable image",
                                   "not a readable video", "too small", "unsupported file type"]):
        assert any(str(tmp_path / name) in line and problem in line for line in errors), (name, errors)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["good.png"]
    assert read_image(tmp_path / "out" / "good.png").shape == (64, 64, 3) and good.exists()


def test_grey_rgba_palette_and_16_bit_images(restore, reference, tmp_path):
    rgb = photo(40, 56)
    grey = rgb[:, :, 1].copy()
    alpha = np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))
    write_image(tmp_path / "in" / "grey.png", grey)
    write_image(tmp_path / "in" / "rgba.png", np.dstack([rgb, alpha]))
    Image.fromarray(rgb).quantize(colors=32).save(tmp_path / "in" / "palette.png")
    deep = rgb.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 100, rgb.shape).astype(np.uint16)
    write_image(tmp_path / "in" / "deep.tiff", deep)
    assert restore(tmp_path / "in", "-o", tmp_path / "out") == 0
    out = tmp_path / "out"

    restored_grey = read_image_any(out / "grey.png")
    expected_grey = reference.restore(np.dstack([grey] * 3)) @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma
    assert restored_grey.shape == (80, 112) and np.abs(restored_grey - expected_grey).max() <= 1

    restored_rgba = read_image_any(out / "rgba.png")
    assert restored_rgba.shape == (80, 112, 4)
    assert np.array_equal(restored_rgba[:, :, :3], reference.restore(rgb))
    expected_alpha = skimage.transform.resize(alpha.astype(float), (80, 112), order=1, mode="edge", anti_aliasing=False)
    assert np.abs(restored_rgba[:, :, 3] - expected_alpha).max() <= 2

    restored_palette = read_image_any(out / "palette.png")
    decoded = np.array(Image.open(tmp_path / "in" / "palette.png").convert("RGB"))
    assert restored_palette.shape == (80, 112, 3) and np.array_equal(restored_palette, reference.restore(decoded))

    restored_deep = read_image_any(out / "deep.tiff")
    assert restored_deep.dtype == np.uint16 and restored_deep.shape == (80, 112, 3)
    eight_bit = np.round(deep / 257).astype(np.uint8)
    assert np.array_equal(restored_deep, reference.restore(eight_bit).astype(np.uint16) * 257)


def test_16_bit_to_an_8_bit_format(restore, reference, tmp_path):
    deep = write_image(tmp_path / "deep.png", photo(32, 40).astype(np.uint16) * 257)
    assert restore(deep, "-o", tmp_path / "out.bmp") == 0
    restored = read_image_any(tmp_path / "out.bmp")
    assert restored.dtype == np.uint8 and np.array_equal(restored, reference.restore(photo(32, 40)))


def test_existing_output_needs_overwrite_and_input_is_never_replaced(restore, tmp_path, capsys):
    source = write_image(tmp_path / "in.png", photo(32, 32))
    target = tmp_path / "out.png"
    target.write_bytes(b"keep me")
    assert restore(source, "-o", target) == 1
    assert f"error: {target}: output exists (use --overwrite to replace it, or --skip-existing to keep it)" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"
    assert restore(source, "-o", target, "--overwrite") == 0
    assert read_image(target).shape == (64, 64, 3)
    original = source.read_bytes()
    assert restore(source, "-o", source, "--overwrite") == 1
    assert "output would replace its input" in capsys.readouterr().err
    assert source.read_bytes() == original


def test_scale_and_stage_options(restore, weights_dir, tmp_path, capsys):
    source = write_image(tmp_path / "in.png", photo(40, 56))
    assert restore(source, "-o", tmp_path / "x1.png", "--scale", "1", "--stages", "dncnn,unet,unsharp") == 0
    assert read_image(tmp_path / "x1.png").shape == (40, 56, 3)
    assert restore(source, "-o", tmp_path / "auto.png", "--stages", "dncnn") == 0  # no edsr: scale 1
    expected = Restorer.from_weights(weights_dir, stages=("dncnn",), scale=1, device="cpu", fp32=True).restore(photo(40, 56))
    assert np.array_equal(read_image(tmp_path / "auto.png"), expected)
    assert restore(source, "-o", tmp_path / "x2.png", "--scale", "2") == 0
    assert read_image(tmp_path / "x2.png").shape == (80, 112, 3)
    capsys.readouterr()
    assert restore(source, "-o", tmp_path / "bad.png", "--scale", "2", "--stages", "dncnn") == 2
    assert "needs the 'edsr' stage" in capsys.readouterr().err
    assert restore(source, "-o", tmp_path / "bad.png", "--stages", "dncnn,sharpen") == 2
    assert "unknown ['sharpen']" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_self_ensemble_option(restore, weights_dir, tmp_path, capsys):
    source = write_image(tmp_path / "in.png", photo(40, 56))
    assert restore(source, "-o", tmp_path / "out.png", "--self-ensemble", "unet,edsr") == 0
    expected = Restorer.from_weights(weights_dir, device="cpu", fp32=True, self_ensemble=("unet", "edsr")).restore(photo(40, 56))
    assert np.array_equal(read_image(tmp_path / "out.png"), expected)
    with pytest.raises(SystemExit) as exit_info:
        restore(source, "-o", tmp_path / "bad.png", "--self-ensemble", "unet,unsharp")
    assert exit_info.value.code == 2 and "expected stages among dncnn, unet, edsr" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("given, strength", [("0.4", 0.4), ("UNet=0.6, dncnn=0.3", {"unet": 0.6, "dncnn": 0.3})])
def test_strength_option(restore, weights_dir, tmp_path, capsys, given, strength):
    source = write_image(tmp_path / "in.png", photo(40, 56))
    assert restore(source, "-o", tmp_path / "out.png", "--strength", given) == 0
    expected = Restorer.from_weights(weights_dir, device="cpu", fp32=True, strength=strength).restore(photo(40, 56))
    assert np.array_equal(read_image(tmp_path / "out.png"), expected)
    assert not np.array_equal(expected, Restorer.from_weights(weights_dir, device="cpu", fp32=True).restore(photo(40, 56)))
    with pytest.raises(SystemExit) as exit_info:
        restore(source, "-o", tmp_path / "bad.png", "--strength", "unet=1.2")
    assert exit_info.value.code == 2 and "argument --strength: expected S or STAGE=S" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_tiled_cli_output_matches_untiled(restore, tmp_path):
    source = write_image(tmp_path / "in.png", photo(72, 100, "astronaut"))
    assert restore(source, "-o", tmp_path / "whole.png") == 0
    assert restore(source, "-o", tmp_path / "tiled.png", "--tile", "32") == 0
    assert max_difference(read_image(tmp_path / "whole.png"), read_image(tmp_path / "tiled.png")) <= 1


def test_missing_weights_is_a_setup_error(tmp_path, capsys):
    source = write_image(tmp_path / "in.png", photo(32, 32))
    assert main(["restore", str(source), "-o", str(tmp_path / "out.png"), "--weights", str(tmp_path / "none")]) == 2
    assert "dncnn.pt: weights not found" in capsys.readouterr().err


def test_failed_image_encode_leaves_no_partial_file(restore, tmp_path, monkeypatch, capsys):
    source = write_image(tmp_path / "in.png", photo(32, 32))
    real_imencode = cv2.imencode

    class HalfWritten:
        """Encoded bytes whose write to disk fails half way (disk full)."""

        def __init__(self, encoded: np.ndarray) -> None:
            self.encoded = encoded

        def tofile(self, path: str) -> None:
            Path(path).write_bytes(self.encoded.tobytes()[: self.encoded.size // 2])
            raise OSError("No space left on device")

    monkeypatch.setattr(helpers.io.cv2, "imencode", lambda suffix, image: (True, HalfWritten(real_imencode(suffix, image)[1])))
    assert restore(source, "-o", tmp_path / "out" / "out.png") == 1
    assert "No space left on device" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_failure_mid_video_leaves_no_partial_file(restore, tmp_path, monkeypatch, capsys):
    write_video(tmp_path / "clip.mp4", frames=6)
    real_restore_batch = Restorer.restore_batch

    def fails_on_second_batch(self, images, first_frame=0):
        if first_frame > 0:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_restore_batch(self, images, first_frame)

    monkeypatch.setattr(Restorer, "restore_batch", fails_on_second_batch)
    assert restore(tmp_path / "clip.mp4", "-o", tmp_path / "out" / "clip.mp4") == 1
    assert "clip.mp4: CUDA out of memory (simulated)" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_help_documents_formats_and_naming(capsys):
    with pytest.raises(SystemExit):
        main(["restore", "--help"])
    text = capsys.readouterr().out
    assert "16-bit" in text and "<stem>.mp4" in text and "--overwrite" in text and "--skip-existing" in text
    assert f"default {DEFAULT_MAX_PIXELS:,} = 8192x8192" in " ".join(text.split()) and DEFAULT_MAX_PIXELS == 8192 * 8192


# ----------------------------------------------------------------------------- hostile and careless use


def test_bomb_header_is_refused_in_one_line_naming_the_limit(restore, tmp_path, capsys):
    bomb = png_with_header(tmp_path / "bomb.png", 12000, 9000)
    small = write_image(tmp_path / "small.png", photo(40, 56))
    assert restore(bomb, small, "-o", tmp_path / "out") == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {bomb}: image of 12000x9000 pixels (108.0 MP) is above the limit of {DEFAULT_MAX_PIXELS:,} "
                      "pixels; refused before decoding (if it is genuine, raise the limit: restore's --max-pixels)"]
    assert "restored 1, failed 1" in captured.out
    assert restore(small, "-o", tmp_path / "limited.png", "--max-pixels", "2000") == 1
    assert "small.png: image of 56x40 pixels (0.0 MP) is above the limit of 2,000 pixels" in capsys.readouterr().err


def truncated_avi(path: Path, frames: int) -> int:
    """An MJPG AVI whose header announces ``frames`` frames, cut in half (as a broken download is); returns how
    many frames still decode."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for index in range(frames):
        writer.write(cv2.cvtColor(photo(48, 64 + index)[:, index:], cv2.COLOR_RGB2BGR))
    writer.release()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decoded, _ = decode_video(path)
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == frames  # the header still announces them all
    capture.release()
    return len(decoded)


def test_truncated_video_is_a_failure_not_a_shorter_result(restore, tmp_path, capsys):
    decodable = truncated_avi(tmp_path / "cut.avi", 40)
    assert 0 < decodable < 40
    assert restore(tmp_path / "cut.avi", "-o", tmp_path / "out" / "cut.mp4") == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'cut.avi'}: only {decodable} of the 40 frames its AVI container announces decode" in captured.err
    assert "restored 0, failed 1" in captured.out
    assert list((tmp_path / "out").iterdir()) == []


def test_matroska_frame_count_is_an_estimate_so_a_shortfall_is_a_warning(restore, tmp_path, capsys):
    write_video(tmp_path / "clip.mkv", frames=30)
    data = (tmp_path / "clip.mkv").read_bytes()
    (tmp_path / "clip.mkv").write_bytes(data[: len(data) // 2])
    decodable = len(decode_video(tmp_path / "clip.mkv")[0])
    assert restore(tmp_path / "clip.mkv", "-o", tmp_path / "clip.mp4") == 0
    captured = capsys.readouterr()
    assert f"warning: {tmp_path / 'clip.mkv'}: {decodable} frames decoded, the Matroska container estimates 30" in captured.err
    assert len(decode_video(tmp_path / "clip.mp4")[0]) == decodable


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG (Python ignores SIGXFSZ): a disk that fills up mid-write."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_disk_full_during_a_video_write_publishes_nothing(restore, tmp_path, capsys):
    write_video(tmp_path / "clip.mp4", frames=40)
    (tmp_path / "out").mkdir()
    with file_size_limit(20_000):
        code = restore(tmp_path / "clip.mp4", "-o", tmp_path / "out" / "clip.mp4")
    captured = capsys.readouterr()
    assert code == 1, captured.out
    assert "restored 0, failed 1" in captured.out
    assert f"{tmp_path / 'out' / 'clip.mp4'}: the written video" in captured.err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name, content, found", [
    ("photo.mp4", "png", "not a video: its content is a PNG image"),
    ("clip.png", "mp4", "not an image: its content is an MP4/MOV video"),
])
def test_file_type_is_decided_by_content(restore, tmp_path, capsys, name, content, found):
    if content == "png":
        write_image(tmp_path / name.replace(".mp4", ".png"), photo(40, 56)).rename(tmp_path / name)
    else:
        write_video(tmp_path / "clip.mp4", frames=3)
        (tmp_path / "clip.mp4").rename(tmp_path / name)
    assert restore(tmp_path / name, "-o", tmp_path / "out" / name) == 1
    captured = capsys.readouterr()
    assert f"error: {tmp_path / name}: " in captured.err and found in captured.err
    assert "restored 0, failed 1" in captured.out


def test_exif_orientation_is_applied_and_not_written(restore, reference, tmp_path):
    upright = photo(40, 56)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers turn it 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(tmp_path / "in.jpg", exif=exif.tobytes(), quality=95)
    assert restore(tmp_path / "in.jpg", "-o", tmp_path / "out.png") == 0
    restored = read_image(tmp_path / "out.png")
    assert restored.shape == (80, 112, 3)
    assert np.abs(restored.astype(int) - reference.restore(read_image(tmp_path / "in.jpg"))).max() == 0
    with Image.open(tmp_path / "out.png") as written:
        assert written.getexif().get(0x0112) is None  # upright pixels, no tag to apply twice


def test_leftovers_of_a_killed_run_are_not_inputs_and_are_cleaned(restore, tmp_path, capsys):
    folder = tmp_path / "photos"
    write_image(folder / "a.png", photo(40, 56))
    (folder / ".a.k3j9x2ab.partial.png").write_bytes(b"")  # a killed run restored into its own input folder
    (folder / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.0q1w2e3r.partial.png").write_bytes(b"half")  # the killed run's temporary output
    assert restore(folder, "-o", out) == 0
    assert "restored 1, failed 0" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]


def test_skip_existing_resumes_an_interrupted_batch(restore, tmp_path, capsys):
    folder = tmp_path / "photos"
    for name in ("a.png", "b.png", "c.png"):
        write_image(folder / name, photo(32, 40))
    out = tmp_path / "out"
    assert restore(folder / "a.png", folder / "b.png", "-o", out) == 0  # then the batch was interrupted
    finished = (out / "a.png").read_bytes()
    capsys.readouterr()
    assert restore(folder, "-o", out, "--skip-existing") == 0
    assert "restored 1, skipped 2, failed 0" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert (out / "a.png").read_bytes() == finished
    assert restore(folder / "a.png", "-o", out) == 1  # without the flag: a failure that names it
    assert "output exists (use --overwrite to replace it, or --skip-existing to keep it)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["restore", str(folder), "-o", str(out), "--skip-existing", "--overwrite"])


@pytest.mark.parametrize("value", ["0", "-5", "1e6", str(10**12)])
def test_max_pixels_is_a_positive_count_up_to_pillows_ceiling(value, capsys):
    with pytest.raises(SystemExit):
        main(["restore", "in.png", "-o", "out.png", "--max-pixels", value])
    assert "--max-pixels" in capsys.readouterr().err


# ----------------------------------------------------------------------------- issue 28: odd sizes, signals, locks, ...


def test_an_odd_sized_video_at_scale_1_is_padded_to_even_and_says_so(restore, tmp_path, capsys):
    frames = [cv2.resize(photo(40, 56), (641, 361)) for _ in range(3)]
    mjpeg_avi(tmp_path / "odd.avi", [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames])
    assert restore(tmp_path / "odd.avi", "-o", tmp_path / "odd.mp4", "--stages", "unsharp") == 0
    captured = capsys.readouterr()
    assert "641x361 frames are written as 642x362 (the MP4 encoder needs even sizes" in captured.out + captured.err
    written, _ = decode_video(tmp_path / "odd.mp4")
    assert len(written) == 3 and written[0].shape == (362, 642, 3)


def test_stage_names_are_normalised_before_the_scale_is_decided(restore, reference, tmp_path):
    source = write_image(tmp_path / "in.png", photo(40, 56))
    assert restore(source, "-o", tmp_path / "out.png", "--stages", "dncnn, EDSR") == 0
    assert read_image(tmp_path / "out.png").shape == (80, 112, 3)


def restore_in_subprocess(weights_dir: Path, *arguments: str | Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "helpers", "restore", *map(str, arguments), "--weights", str(weights_dir),
               "--device", "cpu", "--fp32"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never happened; the restore said: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_restore_says_so_in_one_line_and_leaves_no_partial_output(weights_dir, tmp_path, signum, code):
    write_image(tmp_path / "in" / "a.png", photo(40, 56))
    write_video(tmp_path / "clip.mp4", frames=80, size=(320, 240))  # seconds of work on a CPU
    out = tmp_path / "out"
    restorer = Restorer.from_weights(weights_dir, stages=["unsharp"], scale=1, device="cpu")
    process = restore_in_subprocess(weights_dir, tmp_path / "in" / "a.png", tmp_path / "clip.mp4", "-o", out)
    wait_for(lambda: (out / "a.png").exists() and leftovers(out), process)  # the image done, the video under way
    # a second writer of the same video is refused at once, naming the first one's PID, and takes nothing from it
    partial = leftovers(out)
    _, _, errors = restore_files(restorer, [tmp_path / "clip.mp4"], out / "clip.mp4", overwrite=True)
    busy = f"{out / 'clip.mp4'}: another process (PID {process.pid}) is writing it; wait for it to finish or write elsewhere"
    assert errors == [busy]
    assert leftovers(out) == partial
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith(("error", "Traceback"))]
    expected = (f"error: interrupted while restoring {tmp_path / 'clip.mp4'} (its partial output removed); 1 files "
                "finished (1 restored, 0 kept); run the same command with --skip-existing to go on")
    assert process.returncode == code and lines == [expected]
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]  # no partial video, no lock file


def test_a_video_whose_frames_change_size_is_refused_before_the_larger_frames_are_decoded(restore, tmp_path, capsys):
    small, large = np.full((90, 160, 3), 100, np.uint8), np.full((900, 1600, 3), 50, np.uint8)
    mjpeg_avi(tmp_path / "mixed.avi", [small, large, large])
    assert restore(tmp_path / "mixed.avi", "-o", tmp_path / "mixed.mp4", "--stages", "unsharp", "--max-pixels", "20000") == 1
    assert (f"{tmp_path / 'mixed.avi'}: frame 2 is 1600x900 and above the limit of 20,000 pixels, the first 160x90: "
            "frames that change size are refused") in capsys.readouterr().err
    assert not (tmp_path / "mixed.mp4").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("rate, scale, shown", [(100_000, 1, "100000"), (1, 2000, "0.0005")])
def test_a_frame_rate_mp4_cannot_record_is_named_before_any_frame_is_restored(restore, tmp_path, capsys, rate, scale, shown):
    mjpeg_avi(tmp_path / "rate.avi", [np.full((48, 64, 3), 100, np.uint8)] * 2, rate=rate, scale=scale)
    assert restore(tmp_path / "rate.avi", "-o", tmp_path / "rate.mp4", "--stages", "unsharp") == 1
    error = capsys.readouterr().err
    assert f"a frame rate of {shown} fps cannot be recorded in an MP4 (mp4v takes more than 0.001 and at most 65,535 fps)" in error
    assert "suffix" not in error and not (tmp_path / "rate.mp4").exists()


def test_what_files_are_is_told_as_the_readme_says(restore, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "phone.jpg").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    Image.fromarray(photo(40, 56)).save(tmp_path / "in" / "modern.avif")
    write_image(tmp_path / "in" / "draft.partial.png", photo(40, 56))  # a user's name, not one of ours
    assert restore(tmp_path / "in", "-o", tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'in' / 'phone.jpg'}: its content is a HEIC image, a format not read here" in captured.err
    assert "MP4" not in captured.err and "restored 2, failed 1" in captured.out
    assert read_image(tmp_path / "out" / "modern.avif").shape == (80, 112, 3)
    assert read_image(tmp_path / "out" / "draft.partial.png").shape == (80, 112, 3)


def test_transparency_is_kept_and_grey_with_alpha_stays_grey(restore, reference, tmp_path):
    rgb = photo(40, 56)
    grey = np.ascontiguousarray(rgb[:, :, 1])
    alpha = np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "grey_alpha.png")
    palette = Image.fromarray(rgb).quantize(colors=32)
    palette.save(tmp_path / "palette_alpha.png", transparency=0)
    assert restore(tmp_path / "grey_alpha.png", tmp_path / "palette_alpha.png", "-o", tmp_path / "out") == 0
    grey_out = read_image_any(tmp_path / "out" / "grey_alpha.png")
    assert grey_out.shape == (80, 112, 4)
    assert np.array_equal(grey_out[..., 0], grey_out[..., 1]) and np.array_equal(grey_out[..., 1], grey_out[..., 2])
    expected_grey = reference.restore(np.dstack([grey] * 3)) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(grey_out[..., 0] - expected_grey).max() <= 1
    palette_out = read_image_any(tmp_path / "out" / "palette_alpha.png")
    decoded = np.array(Image.open(tmp_path / "palette_alpha.png").convert("RGBA"))
    assert palette_out.shape == (80, 112, 4) and np.array_equal(palette_out[..., :3], reference.restore(decoded[..., :3]))
    assert palette_out[..., 3].min() == 0 and palette_out[..., 3].max() == 255  # the transparent colour stays transparent


@pytest.mark.parametrize("suffix, format_name", [(".webp", "WEBP"), (".png", "PNG")])
def test_an_animated_image_is_restored_as_its_first_frame_with_a_note(restore, reference, tmp_path, capsys, suffix, format_name):
    first, second = photo(40, 56), photo(40, 56, name="astronaut")
    Image.fromarray(first).save(tmp_path / f"anim{suffix}", save_all=True, append_images=[Image.fromarray(second)],
                                lossless=True, duration=100)
    assert restore(tmp_path / f"anim{suffix}", "-o", tmp_path / f"out{suffix}") == 0
    captured = capsys.readouterr()
    assert f"note: {tmp_path / f'anim{suffix}'}: an animated {format_name}; only its first frame is restored" in captured.out + captured.err
    assert np.array_equal(read_image(tmp_path / f"out{suffix}"), reference.restore(first))
