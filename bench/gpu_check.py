"""Every GPU path in one run, for a machine with CUDA (a Colab GPU runtime): ``python -m bench.gpu_check``.

The test suite runs on CPUs with stand-ins for the GPU; this script runs the real thing, in order:

1. training with float16 AMP (GradScaler), DnCNN and UNet through ``python -m helpers train``: an
   uninterrupted two-epoch run, and the same run killed (SIGKILL) after its first checkpoint and
   resumed; with ``--deterministic`` the weights, optimiser state and history must match bit for bit.
   Then a run saved on the CPU (no loss scaler) resumed on the GPU.
2. synchronisations per training step (``torch.cuda.set_sync_debug_mode``) and seconds per step, from
   a short and a long in-process epoch (their difference: validation and start-up cancel out).
3. a 3840x2160 frame restored with automatic 512-pixel tiles: one window shape, time, peak memory.
4. a 640x360 video restored through ``python -m helpers restore``: frame count and size of the result.
5. frames per second of the cascade at 640x360 -> 1280x720 (float16 and float32) and at
   1280x720 -> 2560x1440, with peak GPU memory.

Prints one line per check and writes ``OUT/report.json``. Exit status 0 when every check passed, 1
when one failed, 2 without CUDA. ``--device cpu --small`` runs the same steps on the CPU at small
sizes: it checks the script, not the GPU.

    python -m bench.gpu_check [--out outputs/gpu_check] [--weights weights] [--device cpu --small]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import skimage.data
import torch

from helpers.data import build_dataset, pairs_for
from helpers.io import atomic_path, read_video_frames, video_writer
from helpers.models import build_model
from helpers.pipeline import Restorer
from helpers.profiling import peak_memory_bytes, reset_peak_memory, synchronize
from helpers.recipes import STAGE_DEFAULTS
from helpers.training import fit

REPO = Path(__file__).resolve().parent.parent
SYNC_WARNING = "called a synchronizing CUDA operation"


@dataclass(frozen=True)
class Sizes:
    """How big each check is: the GPU sizes, or small ones for ``--small`` on a CPU."""

    steps: int  # training steps per epoch
    batch: dict[str, int]
    patch: dict[str, int]
    large_frame: tuple[int, int]  # (width, height) restored in tiles
    tile: int  # 0: the automatic tiles
    video: tuple[int, int, int]  # (width, height, frames)
    speed_frames: tuple[tuple[int, int], ...]  # input sizes for frames per second
    speed_batches: int


GPU_SIZES = Sizes(30, {"dncnn": 16, "unet": 16}, {"dncnn": 50, "unet": 128}, (3840, 2160), 0, (640, 360, 12),
                  ((640, 360), (1280, 720)), 5)
SMALL_SIZES = Sizes(2, {"dncnn": 2, "unet": 2}, {"dncnn": 40, "unet": 32}, (400, 240), 128, (96, 64, 3),
                    ((96, 64),), 1)


def run_cli(arguments: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers", *arguments], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def failure(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}: {(result.stderr.strip().splitlines() or ['no output'])[-1]}"


def train_arguments(model: str, out: Path, device: str, steps: int, batch: int, patch: int, *extra: str) -> list[str]:
    """``python -m helpers train`` for two epochs of ``steps`` steps on the sample set (built once, no download)."""
    return ["train", model, "--data", "sample", "--out", str(out), "--epochs", "2", "--steps-per-epoch", str(steps),
            "--batch-size", str(batch), "--patch", str(patch), "--val-patch", "64", "--early-stop", "0", "--device", device,
            *extra]


def state_differences(first: Path, second: Path) -> dict[str, Any]:
    """Largest weight difference, and whether weights, optimiser state and history (times aside) are identical."""
    one, two = (torch.load(path, map_location="cpu", weights_only=True) for path in (first, second))
    weight_difference = max(float((one["model"][name].double() - two["model"][name].double()).abs().max())
                            for name in one["model"] if one["model"][name].is_floating_point())
    optimiser_equal = all(
        torch.equal(value, two["optimizer"]["state"][index][key])
        for index, state in one["optimizer"]["state"].items() for key, value in state.items()
    )
    without_time = lambda history: {key: values for key, values in history.items() if key != "seconds"}  # noqa: E731
    try:
        np.testing.assert_equal(without_time(one["history"]), without_time(two["history"]))  # NaN-aware (cascade_psnr)
        history_equal = True
    except AssertionError:
        history_equal = False
    return {"max_weight_difference": weight_difference, "optimiser_equal": optimiser_equal, "history_equal": history_equal}


def amp_options(device: str | torch.device) -> dict[str, Any]:
    """float16 autocast with GradScaler on CUDA; none on the CPU, where reduced precision may be emulated (~80x slower)."""
    return {"amp": True, "amp_dtype": "float16"} if torch.device(device).type == "cuda" else {"amp": False}


def check_kill_and_resume(model: str, out: Path, sizes: Sizes, device: str, env: dict[str, str]) -> dict[str, Any]:
    """AMP with --deterministic: uninterrupted vs killed after epoch 1's checkpoint and resumed."""
    arguments = lambda folder, *extra: train_arguments(  # noqa: E731
        model, out / folder, device, sizes.steps, sizes.batch[model], sizes.patch[model],
        *(["--amp", "--amp-dtype", "float16"] if amp_options(device)["amp"] else ["--no-amp"]), "--deterministic", *extra)
    straight = run_cli(arguments("straight"), env)
    if straight.returncode:
        return {"ok": False, "error": f"uninterrupted run: {failure(straight)}"}
    command = [sys.executable, "-m", "helpers", *arguments("killed")]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 900
    while not (out / "killed" / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_mid_run = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    resumed = run_cli(arguments("killed", "--resume"), env)
    if resumed.returncode:
        return {"ok": False, "error": f"resumed run: {failure(resumed)}"}
    comparison = state_differences(out / "straight" / "last.pt", out / "killed" / "last.pt")
    ok = killed_mid_run and comparison["max_weight_difference"] == 0 and comparison["optimiser_equal"] and comparison["history_equal"]
    return {"ok": ok, "killed_mid_run": killed_mid_run, **comparison}


def check_cpu_checkpoint_resumes(out: Path, device: str, env: dict[str, str]) -> dict[str, Any]:
    """Epoch 1 on the CPU (no loss scaler is saved), epoch 2 resumed on ``device`` (float16 AMP there, by default)."""
    first = run_cli([*train_arguments("dncnn", out, "cpu", 2, 2, 40), "--epochs", "1"], env)
    if first.returncode:
        return {"ok": False, "error": f"CPU epoch: {failure(first)}"}
    second = run_cli([*train_arguments("dncnn", out, device, 2, 2, 40), "--resume"], env)
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    ok = second.returncode == 0 and saved["epoch"] == 2
    return {"ok": ok, **({} if ok else {"error": failure(second)}), "scaler_state_saved": bool(saved["scaler"])}


def check_training_step(model: str, sizes: Sizes, device: torch.device, out: Path) -> dict[str, Any]:
    """Synchronisations and seconds per AMP training step: an epoch of n steps minus an epoch of m < n."""
    options = {"sigma": 25.0} if model == "dncnn" else {}
    long_steps, short_steps = 3 * sizes.steps, sizes.steps
    samples = long_steps * sizes.batch[model]
    train = build_dataset(model, pairs_for("sample", "train"), patch_size=sizes.patch[model], samples_per_frame=samples, **options)
    val = build_dataset(model, pairs_for("sample", "val")[:1], patch_size=64, augment=False, **options)
    measured = {}
    for steps in (short_steps, long_steps):
        torch.manual_seed(0)
        reset_peak_memory(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            started = time.perf_counter()
            try:
                fit(build_model(model), train, val, checkpoint_dir=out / f"{model}_{steps}", device=device, epochs=1,
                    steps_per_epoch=steps, batch_size=sizes.batch[model], **amp_options(device),
                    early_stop_patience=None, config={"loss": STAGE_DEFAULTS[model].loss})
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
            synchronize(device)
        seconds = time.perf_counter() - started
        measured[steps] = (sum(SYNC_WARNING in str(warning.message) for warning in caught), seconds, peak_memory_bytes(device))
    extra = long_steps - short_steps
    syncs = (measured[long_steps][0] - measured[short_steps][0]) / extra if device.type == "cuda" else None
    return {"ok": syncs is None or syncs <= 2, "syncs_per_step": syncs,
            "seconds_per_step": (measured[long_steps][1] - measured[short_steps][1]) / extra,
            "peak_memory_mb": measured[long_steps][2] / 2**20}


def photo_frame(width: int, height: int) -> np.ndarray:
    """A photograph (scikit-image's astronaut) stretched to width x height, RGB uint8."""
    import cv2

    return cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC)


def check_large_frame(weights: Path | None, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """A large frame in tiles: one window shape, output size, seconds, peak memory."""
    width, height = sizes.large_frame
    restorer = Restorer.from_weights(weights, device=device, tile=sizes.tile)
    shapes: set[tuple[int, ...]] = set()
    restorer.models["dncnn"].register_forward_pre_hook(lambda module, inputs: shapes.add(tuple(inputs[0].shape)))
    frame = photo_frame(width, height)
    restorer.restore(frame[:64, :64])  # warm-up (kernels, allocator) on a small crop
    reset_peak_memory(device)
    started = time.perf_counter()
    restored = restorer.restore(frame)
    synchronize(device)
    window_shapes = sorted(shape for shape in shapes if shape[-2:] != (64, 64))
    ok = restored.shape == (2 * height, 2 * width, 3) and len(window_shapes) == 1
    return {"ok": ok, "seconds": time.perf_counter() - started, "window_shapes": [list(shape) for shape in window_shapes],
            "peak_memory_mb": peak_memory_bytes(device) / 2**20}


def check_video(weights: Path | None, sizes: Sizes, device: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """A short video through the restore command: the result has every frame, at twice the size."""
    width, height, count = sizes.video
    clip, restored = out / "clip.mp4", out / "restored" / "clip.mp4"
    frame = photo_frame(width, height)
    with video_writer(clip, 25.0, width, height) as write:
        for index in range(count):
            write(np.roll(frame, 4 * index, axis=1))
    arguments = ["restore", str(clip), "-o", str(restored), "--device", device, "--overwrite"]
    started = time.perf_counter()
    result = run_cli(arguments + (["--weights", str(weights)] if weights else []), env)
    seconds = time.perf_counter() - started
    if result.returncode:
        return {"ok": False, "error": failure(result)}
    frames = list(read_video_frames(restored))
    ok = len(frames) == count and frames[0].shape == (2 * height, 2 * width, 3)
    return {"ok": ok, "frames": len(frames), "size": list(frames[0].shape[:2]), "seconds_with_start_up": seconds}


def check_speed(weights: Path | None, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Frames per second of the cascade on batches of video frames, per input size and precision."""
    rows = {}
    for width, height in sizes.speed_frames:
        for fp32 in (False, True):
            restorer = Restorer.from_weights(weights, device=device, fp32=fp32, auto_tile=False)
            batch = [photo_frame(width, height)] * restorer.video_batch_size()
            restorer.restore_batch(batch)  # warm-up
            synchronize(device)
            reset_peak_memory(device)
            started = time.perf_counter()
            for _ in range(sizes.speed_batches):
                restorer.restore_batch(batch)
            synchronize(device)
            fps = sizes.speed_batches * len(batch) / (time.perf_counter() - started)
            label = f"{width}x{height} -> {2 * width}x{2 * height} {'float32' if fp32 else 'default precision'}"
            rows[label] = {"fps": fps, "peak_memory_mb": peak_memory_bytes(device) / 2**20}
    return {"ok": True, **rows}


def run_check(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; an exception fails it (with its last line) without stopping the others."""
    print(f"{name}: running", flush=True)
    try:
        result = check()
    except Exception as error:  # one broken path must not hide the others' results
        result = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    shown = {key: value for key, value in result.items() if key != "traceback"}
    print(f"{name}: {'ok' if result['ok'] else 'FAILED'} {json.dumps(shown, default=str)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"))
    parser.add_argument("--weights", type=Path, default=None, help="folder with dncnn.pt, unet.pt, edsr.pt (default: weights/)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--small", action="store_true", help="small sizes (with --device cpu: check the script itself)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; run it on a GPU (in Colab: Runtime > Change runtime "
              "type > GPU), or with --device cpu --small to check the script itself", file=sys.stderr)
        return 2
    sizes, device = (SMALL_SIZES if args.small else GPU_SIZES), torch.device(args.device)
    out = args.out.resolve()
    env = {**os.environ, "IMAGE_REPAIR_CACHE": str(out / "cache"), "PYTHONPATH": str(REPO)}
    os.environ["IMAGE_REPAIR_CACHE"] = env["IMAGE_REPAIR_CACHE"]  # the in-process checks' sample set too
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "small": args.small}
    print(f"gpu_check: {json.dumps(header)}", flush=True)
    checks: dict[str, Callable[[], dict[str, Any]]] = {
        **{f"train {model}: killed and resumed, AMP, --deterministic":
           (lambda model=model: check_kill_and_resume(model, out / "train" / model, sizes, args.device, env))
           for model in ("dncnn", "unet")},
        "train dncnn: CPU checkpoint resumed here": lambda: check_cpu_checkpoint_resumes(out / "train" / "cpu_then_here", args.device, env),
        **{f"train {model}: synchronisations per step": (lambda model=model: check_training_step(model, sizes, device, out / "steps"))
           for model in ("dncnn", "unet")},
        "restore a large frame in tiles": lambda: check_large_frame(args.weights, sizes, device),
        "restore a video (CLI)": lambda: check_video(args.weights, sizes, args.device, out / "video", env),
        "frames per second": lambda: check_speed(args.weights, sizes, device),
    }
    report = {"header": header, "checks": {name: run_check(name, check) for name, check in checks.items()}}
    with atomic_path(out / "report.json") as temp:
        temp.write_text(json.dumps(report, indent=2, default=str))
    failed = [name for name, result in report["checks"].items() if not result["ok"]]
    print(f"gpu_check: {len(checks) - len(failed)}/{len(checks)} checks passed; report in {out / 'report.json'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
