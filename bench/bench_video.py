"""Video throughput: frames per second restoring a 10-second 640x360 clip the bench makes, file to file.

The clip (25 fps, a degraded photo panning slowly) is written once with ``helpers.io.video_writer``.
Each way of running it reads the clip, restores its first ``--frames`` frames and writes an MP4,
exactly as ``python -m helpers restore`` does; the ways run in an order that rotates every round:

* one batch at a time (before): decode a batch of 4, restore it, encode it, then the next;
* frames in flight, 1 stream (``--all-ways``): ``Restorer.restore_frames`` with one batch of 1 in
  compute while the caller decodes and encodes;
* frames in flight, 2 streams (the default on a CPU of 2+ threads): two frames in compute at once,
  each stream with half the threads.

Also reported: decoding and encoding alone, per frame. ``--frames 0`` restores the whole clip (250
frames per way: about 250 x the s/frame of ``bench_peers`` each).

    python -m bench.bench_video [--frames N] [--rounds N] [--all-ways] [--quick]

Writes outputs/bench/video.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from bench.bench_inference import build_networks, degraded_photo, save_json
from helpers.io import read_video_frames, tensor_to_image, video_writer
from helpers.pipeline import Restorer

OUTPUT_PATH = Path("outputs/bench/video.json")
CLIP_SECONDS, CLIP_FPS = 10, 25
BEFORE = "one batch of 4 at a time (before)"


def make_clip(path: Path, seconds: int = CLIP_SECONDS, fps: int = CLIP_FPS) -> int:
    """Write a 640x360 clip of the degraded photo panning one pixel per frame (wrapping round); returns its frame count."""
    degraded, _ = degraded_photo()
    image = tensor_to_image(degraded[0])
    height, width = image.shape[:2]
    with video_writer(path, fps, width, height) as write:
        for index in range(seconds * fps):
            write(np.ascontiguousarray(np.roll(image, index, axis=1)))
    return seconds * fps


def batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    iterator = iter(frames)
    while batch := list(islice(iterator, size)):
        yield batch


def one_batch_at_a_time(restorer: Restorer, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The path before frames in flight: decode 4, restore 4, write 4, in turn."""
    for batch in batches(frames, 4):
        yield from restorer.restore_batch(batch)


def restore_clip(restore: Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]], clip: Path, frames: int, out: Path) -> float:
    """Decode ``frames`` frames of ``clip``, restore them with ``restore``, encode them to ``out``; returns seconds."""
    start = time.perf_counter()
    video = read_video_frames(clip)
    with video_writer(out, video.fps, 2 * video.width, 2 * video.height) as write:
        for frame in restore(islice(video, frames)):
            write(frame)
    return time.perf_counter() - start


def codec_seconds(clip: Path, frames: int, out: Path) -> dict[str, float]:
    """Decoding alone and encoding alone (at the output's 1280x720), seconds per frame."""
    start = time.perf_counter()
    decoded = list(islice(read_video_frames(clip), frames))
    decode = (time.perf_counter() - start) / len(decoded)
    upscaled = [np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1) for frame in decoded]
    start = time.perf_counter()
    with video_writer(out, CLIP_FPS, upscaled[0].shape[1], upscaled[0].shape[0]) as write:
        for frame in upscaled:
            write(frame)
    return {"decode_s": decode, "encode_s": (time.perf_counter() - start) / len(upscaled)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    networks, weights = build_networks()
    restorer = Restorer(networks)
    ways: dict[str, Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]]] = {
        BEFORE: lambda frames: one_batch_at_a_time(restorer, frames),
    }
    if args.all_ways or torch.get_num_threads() < 2:
        ways["frames in flight, 1 stream"] = lambda frames: restorer.restore_frames(frames, streams=1, batch_size=1)
    if torch.get_num_threads() >= 2:
        ways["frames in flight, 2 streams"] = lambda frames: restorer.restore_frames(frames, streams=2, batch_size=1)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as folder:
        clip, out = Path(folder) / "clip.mp4", Path(folder) / "restored.mp4"
        total = make_clip(clip)
        frames = args.frames or total
        codec = codec_seconds(clip, frames, out)
        restorer.restore(next(iter(read_video_frames(clip))))  # warm-up: oneDNN builds its kernels
        names = list(ways)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                out.unlink(missing_ok=True)
                seconds[name].append(restore_clip(ways[name], clip, frames, out))
            print(f"  round {round_index + 1}/{args.rounds} done", flush=True)
    default = f"frames in flight, {restorer.video_streams()} stream{'s' * (restorer.video_streams() > 1)}"
    before_fps = frames / float(np.median(seconds[BEFORE]))
    rows = [{"way": name, "default": name == default, "fps": frames / float(np.median(values)),
             "x_before": frames / float(np.median(values)) / before_fps, "runs_s": values} for name, values in seconds.items()]
    return {"clip": f"{CLIP_SECONDS} s, 640x360, {CLIP_FPS} fps ({total} frames) -> 1280x720", "frames_restored": frames,
            "device": str(restorer.device), "threads": torch.get_num_threads(), "weights": weights, "rounds": args.rounds,
            "codec_per_frame": codec, "rows": rows, "load_average_after": list(os.getloadavg())}


def print_table(result: dict[str, Any]) -> None:
    print(f"\nVideo, {result['clip']}, first {result['frames_restored']} frames, {result['device']}, {result['threads']} threads, "
          f"median of {result['rounds']} interleaved rounds; load average after {result['load_average_after'][0]:.2f}")
    print(f"decoding {1e3 * result['codec_per_frame']['decode_s']:.1f} ms/frame, encoding {1e3 * result['codec_per_frame']['encode_s']:.1f} ms/frame")
    header = f"{'way':40s} {'frames/s':>9s} {'x before':>9s}"
    print(header)
    print("-" * len(header))
    for row in result["rows"]:
        print(f"{row['way'] + (' (default)' if row['default'] else ''):40s} {row['fps']:9.3f} {row['x_before']:8.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_video", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                        help="1 frame per way (also BENCH_QUICK=1)")
    parser.add_argument("--frames", type=int, default=None, help="frames restored per way and round (default 2, --quick 1; 0: the whole clip)")
    parser.add_argument("--all-ways", action="store_true", help="also frames in flight with 1 stream on a multi-thread CPU")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUTPUT_PATH)
    args = parser.parse_args(argv)
    args.frames = args.frames if args.frames is not None else (1 if args.quick else 2)
    result = measure(args)
    print_table(result)
    save_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
