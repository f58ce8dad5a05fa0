"""Does the Colab path work on a 16 GB GPU? Every GPU path once, in one run: ``python -m bench.gpu_check``.

The test suite runs on CPUs with stand-ins for the GPU; this script runs the real thing, with GPU memory capped
to a T4's 15 GB (``torch.cuda.set_per_process_memory_fraction``; ``--memory-cap-gib 0``: no cap), in order:

1. inference equivalence: a clean, a noisy (sigma 20) and a motion-blurred 640x360 frame, so that every gate path
   runs (DnCNN on the noisy frame, skipped on the clean one alone; the UNet's share of each), restored on the GPU
   in float16 and in float32 and on the CPU in float32: PSNR floors between them, gate shares within 0.02; then
   one float16 overflow forced into EDSR, which must be redone in float32 to a finite result;
2. self-ensemble (``--self-ensemble unet``) on the blurred frame;
3. a 3840x2160 frame made from a noisy photo, restored in automatic tiles: one window shape, DnCNN seen running;
4. frames per second and peak memory at 4x640x360 and 4x1280x720, float16 and float32, on noisy frames (DnCNN
   runs), with the synchronisations of one batch by code location;
5. 20 training steps each at the notebooks' sizes, two DataLoader workers and pinned memory: DnCNN 128 x 50,
   UNet 16 x 256 with the perceptual loss (random MobileNetV3 weights), EDSR 32 x 64: seconds and
   synchronisations per step (by code location), peak memory, skipped steps;
6. ``train cascade`` at notebook 05's settings (8 x 128, grad clip 1, 20 steps), without and with gradient
   checkpointing, each exported and loaded by ``Restorer.from_weights``;
7. kill (SIGKILL after epoch 1) and resume of a ``--deterministic`` UNet run (with its per-epoch cascade
   validation) and of a ``--deterministic`` cascade run, on a small ``photos:`` folder: bit-exact against
   uninterrupted runs;
8. ``calibrate-deblur``'s measurement on six photos, on the GPU and on the CPU: the same ramp;
9. a 640x360 video through ``python -m helpers restore``, and a run saved on the CPU resumed on the GPU.

Expected duration on one H100-class GPU: about 5 minutes, under 8 (an estimate from the sizes above: this
version has not run on a GPU yet; each check prints its own seconds). It prints one table and writes
``OUT/report.json``. Exit status 0 when every check passed, 1 when one failed, 2 without CUDA.
``--device cpu --small`` runs every check at small sizes on the CPU, with tiny untrained networks (unless
``--weights`` is given) and CPU stand-ins for the synchronisation counts (not judged there): it checks the script,
not the GPU (about 1-2 minutes on two cores).

    python -m bench.gpu_check [--out outputs/gpu_check] [--weights weights] [--memory-cap-gib 15] [--device cpu --small]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import cv2
import numpy as np
import skimage.data
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import pipeline, recipes
from helpers.calibrate import calibrate_deblur_ramp
from helpers.cascade import load_cascade, needs_checkpointing
from helpers.checkpoint import export_weights, load_model
from helpers.commands import main as helpers_main
from helpers.degrade import add_gaussian_noise, motion_blur
from helpers.io import float_image, image_to_tensor, read_video_frames, uint8_image, video_writer, write_image
from helpers.safe_writes import atomic_path
from helpers.metrics import psnr
from helpers.models import build_model
from helpers.pipeline import DEFAULT_WEIGHTS_DIR, NETWORK_STAGES, Restorer
from helpers.profiling import COLAB_GPUS, peak_memory_bytes, reset_peak_memory, synchronize
from helpers.training import TIMING_KEYS, fit

REPO = Path(__file__).resolve().parent.parent
SYNC_WARNING = "called a synchronizing CUDA operation"
MB = 2**20
# Runs ``python -m helpers`` with GPU memory capped: argv[1] is the share of the device's memory (1: no cap).
CAPPED_HELPERS = (
    "import runpy, sys, torch\n"
    "if torch.cuda.is_available() and float(sys.argv[1]) < 1:\n"
    "    torch.cuda.set_per_process_memory_fraction(float(sys.argv[1]))\n"
    "sys.argv = ['helpers', *sys.argv[2:]]\n"
    "runpy.run_module('helpers', run_name='__main__', alter_sys=True)\n"
)


# ----------------------------------------------------------------------------- synchronisations by code location


def _location(stack: list[traceback.FrameSummary]) -> str:
    """'helpers/x.py:12 (function)' of the innermost project frame, with its project caller and the library
    frame that synchronised, when that is not torch's own: where a synchronisation comes from, for a reader."""
    project = [index for index, frame in enumerate(stack) if frame.filename.startswith(str(REPO / "helpers"))]
    if not project:
        return "outside helpers"
    name = lambda frame: f"{Path(frame.filename).relative_to(REPO)}:{frame.lineno} ({frame.name})"  # noqa: E731
    label = name(stack[project[-1]])
    if len(project) > 1:
        label += f" <- {name(stack[project[-2]])}"
    library = [frame for frame in stack[project[-1] + 1 :] if "site-packages" in frame.filename
               and "/torch/" not in frame.filename and "/unittest/" not in frame.filename]
    if library:
        label += f" via {library[-1].filename.split('site-packages/')[-1]}:{library[-1].lineno}"
    return label


class _HostReadsStandIn(TorchDispatchMode):
    """Operations that hand a tensor's value, or a size that depends on it, to Python: each a synchronisation on a GPU."""

    READS = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
             torch.ops.aten.masked_select.default, torch.ops.aten.equal.default, torch.ops.aten.is_nonzero.default)

    def __init__(self, record: Callable[[], None]) -> None:
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        boolean_index = func is torch.ops.aten.index.Tensor and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in args[1] if index is not None)
        if func in self.READS or boolean_index:
            self.record()
        return func(*args, **(kwargs or {}))


class SyncCounter:
    """Host synchronisations while active, by code location (``counts``: {location: number}).

    On CUDA, the ones ``torch.cuda.set_sync_debug_mode`` reports. On a CPU, which never waits, stand-ins for what
    would wait on a GPU: reading a tensor's value in Python (``item``, ``bool``, ``tolist``...), operations whose
    output size depends on the values (``nonzero``, boolean masks), and ``torch.tensor(..., device=...)`` (a copy
    from host memory). A CPU cannot tell host tensors from device ones, so stand-ins include reads of tensors
    that live in host memory on a GPU too (the trainer's edge checks). This thread only. ``within``: count only
    the synchronisations made inside a call of the function of that name (``train_epoch``: not validation's).
    """

    def __init__(self, device: torch.device | str, within: str | None = None) -> None:
        self.device = torch.device(device)
        self.within = within
        self.counts: Counter[str] = Counter()
        self._exits = contextlib.ExitStack()

    def _record(self) -> None:
        stack = traceback.extract_stack()[:-2]
        if self.within is None or any(frame.name == self.within for frame in stack):
            self.counts[_location(stack)] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> SyncCounter:
        exits = self._exits.__enter__()
        if self.device.type == "cuda":
            exits.enter_context(warnings.catch_warnings())  # restores the filters and showwarning after
            warnings.simplefilter("always")
            shown = warnings.showwarning

            def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
                if SYNC_WARNING in str(message):
                    self._record()
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            torch.cuda.set_sync_debug_mode("warn")
            exits.callback(torch.cuda.set_sync_debug_mode, 0)
            return self
        tolist, tensor = torch.Tensor.tolist, torch.tensor

        def counted_tolist(values: torch.Tensor) -> Any:
            self._record()
            return tolist(values)

        def counted_tensor(*args: Any, **kwargs: Any) -> torch.Tensor:
            if kwargs.get("device") is not None:
                self._record()
            return tensor(*args, **kwargs)

        exits.enter_context(mock.patch.object(torch.Tensor, "tolist", counted_tolist))
        exits.enter_context(mock.patch.object(torch, "tensor", counted_tensor))
        exits.enter_context(_HostReadsStandIn(self._record))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._exits.__exit__(*exc_info)

    def per(self, repeats: int) -> dict[str, float]:
        """Counts per repetition (per step, per batch), the locations that recur in every one first."""
        return {location: count / repeats for location, count in self.counts.most_common()}

    def every(self, repeats: int) -> int:
        """Synchronisations in every one of ``repeats`` repetitions: a location met fewer times (once per epoch) left out."""
        return sum(count // repeats for count in self.counts.values())


# ----------------------------------------------------------------------------- sizes, frames, helpers


@dataclass(frozen=True)
class Sizes:
    """How big each check is: the GPU sizes, or small ones for ``--small`` on a CPU."""

    frame: tuple[int, int]  # (width, height) of the inference-equivalence frames
    large_frame: tuple[int, int]  # restored in tiles
    tile: int  # 0: the automatic tiles
    speed_frames: tuple[tuple[int, int], ...]
    speed_batch: int
    speed_batches: int
    steps: int  # training steps per measured run
    train: dict[str, tuple[int, int]]  # stage -> (batch, patch) of the notebooks
    cascade: tuple[int, int, int]  # (batch, patch, steps) of notebook 05's fine-tuning
    resume: dict[str, tuple[int, int, int]]  # stage -> (batch, patch, steps per epoch) of the kill-and-resume runs
    photo: tuple[int, int]  # (width, height) of the photos: folder's photos
    video: tuple[int, int, int]  # (width, height, frames)
    arch: dict[str, dict[str, Any]]  # stage -> the networks' architecture ({}: the notebooks' defaults)


GPU_SIZES = Sizes((640, 360), (3840, 2160), 0, ((640, 360), (1280, 720)), 4, 5, 20,
                  {"dncnn": (128, 50), "unet": (16, 256), "edsr": (32, 64)}, (8, 128, 20),
                  {"unet": (8, 128, 10), "cascade": (4, 128, 10)}, (1024, 768), (640, 360, 12),
                  {stage: {} for stage in NETWORK_STAGES})
SMALL_SIZES = Sizes((96, 64), (400, 240), 128, ((96, 64),), 2, 1, 2,
                    {"dncnn": (4, 40), "unet": (2, 32), "edsr": (2, 24)}, (1, 48, 2),
                    {"unet": (2, 48, 2), "cascade": (1, 48, 2)}, (384, 288), (96, 64, 3),
                    {"dncnn": {"depth": 5, "channels": 16}, "unet": {"base_channels": 8, "depth": 2},
                     "edsr": {"num_blocks": 2, "channels": 16}})
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "brick")


def photo_frame(width: int, height: int, name: str = "rocket") -> np.ndarray:
    """A photograph that ships in scikit-image, stretched to width x height, RGB uint8 (the rocket reads clean to the
    noise gate at every size used here: 0.6-0.7/255)."""
    image = getattr(skimage.data, name)()
    image = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_CUBIC)


def noisy(image: np.ndarray, sigma: float = 20.0, seed: int = 0) -> np.ndarray:
    return uint8_image(add_gaussian_noise(float_image(image), sigma, np.random.default_rng(seed)))


def blurred(image: np.ndarray, seed: int = 0) -> np.ndarray:
    return uint8_image(motion_blur(float_image(image), np.random.default_rng(seed)))


def write_photos(folder: Path, size: tuple[int, int]) -> Path:
    """A small ``photos:`` folder: the scikit-image photographs at ``size``."""
    for name in PHOTO_NAMES:
        if not (folder / f"{name}.png").is_file():
            write_image(folder / f"{name}.png", photo_frame(*size, name))
    return folder


def tiny_weights(folder: Path, arch: dict[str, dict[str, Any]]) -> Path:
    """A weights folder of untrained networks of ``arch``, for ``--small`` (seconds instead of minutes on a CPU)."""
    torch.manual_seed(0)
    for stage in NETWORK_STAGES:
        export_weights(build_model(stage, **arch[stage]), folder / f"{stage}.pt", half=False)
    return folder


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """The block's output (progress bars, epochs) into ``log``: the checks' own lines stay readable."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield
    finally:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(captured.getvalue())


def helpers_command(arguments: list[str], log: Path) -> int:
    """``python -m helpers ARGUMENTS`` in this process (no start-up; GPU memory capped as here), its output to ``log``."""
    with quiet(log):
        try:
            return helpers_main(arguments)
        except SystemExit as exit:  # argparse refused the arguments
            return exit.code if isinstance(exit.code, int) else 2


def command_failure(code: int, log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return f"exit {code}: {lines[-1] if lines else 'no output'}"


def state_differences(first: Path, second: Path) -> dict[str, Any]:
    """Largest weight difference, and whether weights, optimiser state and history (times aside) are identical."""
    one, two = (torch.load(path, map_location="cpu", weights_only=True) for path in (first, second))
    weight_difference = max(float((one["model"][name].double() - two["model"][name].double()).abs().max())
                            for name in one["model"] if one["model"][name].is_floating_point())
    optimiser_equal = all(
        torch.equal(value, two["optimizer"]["state"][index][key])
        for index, state in one["optimizer"]["state"].items() for key, value in state.items()
    )
    without_time = lambda history: {key: values for key, values in history.items() if key not in TIMING_KEYS}  # noqa: E731
    try:
        np.testing.assert_equal(without_time(one["history"]), without_time(two["history"]))  # NaN-aware (cascade_psnr)
        history_equal = True
    except AssertionError:
        history_equal = False
    return {"max_weight_difference": weight_difference, "optimiser_equal": optimiser_equal, "history_equal": history_equal}


@contextlib.contextmanager
def recorded_gates() -> Iterator[dict[str, list[torch.Tensor]]]:
    """The shares the Restorer's noise and deblur gates give while the block runs, per call."""
    shares: dict[str, list[torch.Tensor]] = {"denoise": [], "deblur": []}
    denoise, deblur = pipeline.denoise_weights, pipeline.deblur_weights

    def recording(gate: str, function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def recorded(*args: Any, **kwargs: Any) -> torch.Tensor:
            share = function(*args, **kwargs)
            shares[gate].append(share.detach().float().cpu())
            return share

        return recorded

    with mock.patch.object(pipeline, "denoise_weights", recording("denoise", denoise)), \
         mock.patch.object(pipeline, "deblur_weights", recording("deblur", deblur)):
        yield shares


def count_calls(module: torch.nn.Module) -> list[tuple[int, ...]]:
    """Input shapes of every call of ``module`` from now on."""
    shapes: list[tuple[int, ...]] = []
    module.register_forward_pre_hook(lambda _, inputs: shapes.append(tuple(inputs[0].shape)))
    return shapes


# ----------------------------------------------------------------------------- the checks


@dataclass
class Context:
    """What every check needs: the device, the sizes, the weights, the output folder, the memory cap."""

    device: torch.device
    sizes: Sizes
    weights: Path
    out: Path
    memory_share: float  # of the GPU's memory, for subprocesses (1: no cap)

    @property
    def half(self) -> torch.dtype:
        """The reduced precision of the Restorer here: float16 on CUDA; bfloat16 stands in for it on a CPU."""
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16

    def restorer(self, **options: Any) -> Restorer:
        precision = {} if options.get("fp32") else {"half_dtype": self.half}
        return Restorer.from_weights(self.weights, device=self.device, **precision, **options)


def check_inference_equivalence(context: Context) -> dict[str, Any]:
    """Clean, noisy and blurred frames: reduced precision and float32 here against float32 on the CPU; forced overflow."""
    clean = photo_frame(*context.sizes.frame)
    frames = {"clean": clean, "noisy": noisy(clean), "blurred": blurred(clean)}
    batch = image_to_tensor(np.stack(list(frames.values())))
    runs: dict[str, tuple[torch.Tensor, dict[str, list[torch.Tensor]]]] = {}
    dncnn_batches = 0
    for name, restorer in (("half", context.restorer()), ("float32", context.restorer(fp32=True)),
                           ("cpu float32", Restorer.from_weights(context.weights, device="cpu", fp32=True))):
        calls = count_calls(restorer.models["dncnn"])
        with recorded_gates() as shares:
            runs[name] = restorer.restore_tensor(batch).cpu(), shares
        if name == "half":
            dncnn_batches = len(calls)
            restorer.restore_tensor(batch[:1])  # the clean frame alone: DnCNN skipped
            dncnn_skipped_on_clean = len(calls) == dncnn_batches
    reference, reference_shares = runs.pop("cpu float32")
    result: dict[str, Any] = {"dncnn_ran": dncnn_batches > 0, "dncnn_skipped_on_clean": dncnn_skipped_on_clean}
    floors = {"half": 40.0 if context.half == torch.float16 else 30.0, "float32": 60.0}
    ok = result["dncnn_ran"] and dncnn_skipped_on_clean
    for name, (output, shares) in runs.items():
        frame_psnr = psnr(output.clamp(0, 1), reference, reduction="none").tolist()
        gaps = {gate: float((torch.cat(shares[gate]) - torch.cat(reference_shares[gate])).abs().max()) for gate in shares}
        result[f"{name}: PSNR vs CPU float32 (dB)"] = dict(zip(frames, (round(value, 2) for value in frame_psnr)))
        result[f"{name}: largest gate share difference"] = gaps
        ok = ok and min(frame_psnr) >= floors[name] and max(gaps.values()) <= 0.02
    result["shares (CPU float32)"] = {gate: dict(zip(frames, torch.cat(values).tolist())) for gate, values in reference_shares.items()}
    result["overflow"] = check_overflow_redo(context, batch[2:], runs["float32"][0][2:])
    result["ok"] = bool(ok and result["overflow"]["ok"])
    return result


def check_overflow_redo(context: Context, frame: torch.Tensor, float32_output: torch.Tensor) -> dict[str, Any]:
    """EDSR's first reduced-precision activations forced to inf: the frame must be redone in float32, with a warning."""
    restorer = context.restorer()
    restorer.models["edsr"].head.register_forward_hook(
        lambda module, inputs, output: torch.full_like(output, math.inf) if output.dtype == context.half else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = restorer.restore_tensor(frame).cpu()
    warned = any("redone in float32" in str(warning.message) for warning in caught)
    finite = bool(torch.isfinite(output).all())
    agreement = float(psnr(output.clamp(0, 1), float32_output.clamp(0, 1)))
    return {"ok": warned and finite and agreement >= 60, "warned": warned, "finite": finite, "psnr_vs_float32_db": round(agreement, 2)}


def check_self_ensemble(context: Context) -> dict[str, Any]:
    """The UNet as a self-ensemble on a blurred frame: finite, close to the plain run, synchronisations per batch."""
    frame = image_to_tensor(blurred(photo_frame(*context.sizes.frame)))
    plain = context.restorer().restore_tensor(frame).cpu()
    restorer = context.restorer(self_ensemble=("unet",))
    restorer.restore_tensor(frame)  # warm-up
    synchronize(context.device)
    started = time.perf_counter()
    with SyncCounter(context.device) as syncs:
        output = restorer.restore_tensor(frame).cpu()
    seconds = time.perf_counter() - started
    agreement = float(psnr(output.clamp(0, 1), plain.clamp(0, 1)))
    judged = context.device.type == "cuda"
    ok = bool(torch.isfinite(output).all()) and agreement >= 30 and (not judged or syncs.total <= 3)
    return {"ok": ok, "seconds": round(seconds, 3), "psnr_vs_plain_db": round(agreement, 2), "syncs": syncs.per(1)}


def check_tiled_frame(context: Context) -> dict[str, Any]:
    """A large noisy frame in tiles: one window shape, DnCNN seen running, output size, time, peak memory."""
    width, height = context.sizes.large_frame
    frame = noisy(photo_frame(width, height))
    restorer = context.restorer(tile=context.sizes.tile)
    shapes = count_calls(restorer.models["dncnn"])
    restorer.restore(frame[:64, :64])  # warm-up (kernels, allocator) on a small crop
    reset_peak_memory(context.device)
    started = time.perf_counter()
    with SyncCounter(context.device) as syncs:
        restored = restorer.restore(frame)
    synchronize(context.device)
    seconds = time.perf_counter() - started
    windows = [shape for shape in shapes if shape[-2:] != (64, 64)]
    ok = restored.shape == (2 * height, 2 * width, 3) and len(set(windows)) == 1
    return {"ok": ok, "seconds": round(seconds, 2), "window_shapes": [list(shape) for shape in sorted(set(windows))],
            "dncnn_windows": len(windows), "peak_memory_mb": round(peak_memory_bytes(context.device) / MB),
            "syncs": syncs.per(1)}


def check_throughput(context: Context) -> dict[str, Any]:
    """Frames per second and peak memory on batches of noisy frames; synchronisations of one batch by location."""
    rows: dict[str, Any] = {}
    ok = True
    for width, height in context.sizes.speed_frames:
        batch = [noisy(photo_frame(width, height, name), seed=index) for index, name in enumerate(PHOTO_NAMES[: context.sizes.speed_batch])]
        for fp32 in (False, True):
            restorer = context.restorer(fp32=fp32, auto_tile=False)
            restorer.restore_batch(batch)  # warm-up
            synchronize(context.device)
            reset_peak_memory(context.device)
            started = time.perf_counter()
            for _ in range(context.sizes.speed_batches):
                restorer.restore_batch(batch)
            synchronize(context.device)
            fps = context.sizes.speed_batches * len(batch) / (time.perf_counter() - started)
            with SyncCounter(context.device) as syncs:
                restorer.restore_batch(batch)
            label = f"{len(batch)}x{width}x{height} {'float32' if fp32 else str(context.half).removeprefix('torch.')}"
            rows[label] = {"fps": round(fps, 2), "peak_memory_mb": round(peak_memory_bytes(context.device) / MB),
                           "syncs_per_batch": syncs.per(1)}
            ok = ok and (context.device.type != "cuda" or syncs.total <= 3)  # noise gate, finiteness, the result
    return {"ok": ok, **rows}


def training_config(stage: str, batch: int, patch: int, steps: int, arch: dict[str, Any]) -> dict[str, Any]:
    """A notebook's recipe at its own sizes, on the sample set, one epoch of ``steps`` steps with two workers."""
    loss = recipes.STAGE_DEFAULTS[stage].loss
    if stage == "unet":  # notebook 03's perceptual term, on an untrained MobileNetV3 (no download)
        loss = {"weights": {**loss["weights"], "perceptual": 0.01}, "perceptual": {"weights": "random"}}
    return {"epochs": 1, "batch_size": batch, "steps_per_epoch": steps, "num_workers": 2, "early_stop_patience": None,
            "lr": recipes.STAGE_DEFAULTS[stage].lr, "loss": loss, "arch": arch,
            "data": {"source": "sample", "patch": patch, "val_patch": 64, "val_crops": 1}}


def check_training_steps(context: Context, stage: str) -> dict[str, Any]:
    """``steps`` training steps at the notebook's size: seconds and synchronisations per step, peak memory, skipped."""
    batch, patch = context.sizes.train[stage]
    steps = context.sizes.steps
    config = training_config(stage, batch, patch, steps, context.sizes.arch[stage])
    train, val = recipes.build_datasets(stage, config)
    model = recipes.build_model(stage, config)
    reset_peak_memory(context.device)
    folder = context.out / "steps" / stage
    with SyncCounter(context.device, within="train_epoch") as syncs, quiet(folder / "log.txt"):
        history = fit(model, train, val, config=config, checkpoint_dir=folder, device=context.device)
    per_step = syncs.every(steps)
    judged = context.device.type == "cuda"
    return {"ok": history["epoch"] == [1] and (not judged or per_step <= 2), "batch": batch, "patch": patch,
            "seconds_per_step": round(history["seconds_per_step"][0], 4), "syncs_per_step": per_step,
            "syncs_by_location": syncs.per(steps), "skipped_steps": history["skipped_steps"][0],
            "peak_memory_mb": round(peak_memory_bytes(context.device) / MB)}


def check_train_cascade(context: Context) -> dict[str, Any]:
    """``train cascade`` at notebook 05's settings, without and with checkpointing, exported and loaded back."""
    batch, patch, steps = context.sizes.cascade
    model, _ = load_cascade(context.weights)
    result: dict[str, Any] = {"needs_checkpointing (estimate)": needs_checkpointing(model, batch, patch)}
    frame = image_to_tensor(photo_frame(*context.sizes.frame))
    ok = True
    for checkpointing in (False, True):
        out = context.out / "cascade" / ("checkpointing" if checkpointing else "plain")
        arguments = ["train", "cascade", "--init", str(context.weights), "--data", "sample", "--out", str(out),
                     "--epochs", "1", "--steps-per-epoch", str(steps), "--batch-size", str(batch), "--patch", str(patch),
                     "--val-patch", str(patch), "--val-crops", "1", "--grad-clip", "1", "--clean-fraction", "0.2",
                     "--early-stop", "0", "--device", context.device.type, *(["--checkpointing"] if checkpointing else [])]
        reset_peak_memory(context.device)
        started = time.perf_counter()
        with SyncCounter(context.device, within="train_epoch") as syncs:
            code = helpers_command(arguments, out / "log.txt")
        label = "checkpointing" if checkpointing else "no checkpointing"
        if code:
            result[label] = {"error": command_failure(code, out / "log.txt")}
            ok = False
            continue
        restored = Restorer.from_weights(out / "weights", device=context.device).restore_tensor(frame)
        per_step = syncs.every(steps)
        result[label] = {"seconds": round(time.perf_counter() - started, 1), "peak_memory_mb": round(peak_memory_bytes(context.device) / MB),
                         "syncs_per_step": per_step, "syncs_by_location": syncs.per(steps), "restored": list(restored.shape)}
        ok = ok and bool(torch.isfinite(restored).all()) and (context.device.type != "cuda" or per_step <= 2)
    return {"ok": ok, **result}


def check_kill_and_resume(context: Context, stage: str, photos: Path) -> dict[str, Any]:
    """A ``--deterministic`` run on ``photos:``, killed (SIGKILL) after epoch 1 and resumed, against an uninterrupted one."""
    batch, patch, steps = context.sizes.resume[stage]
    folder = context.out / "resume" / stage

    def arguments(run: str, *extra: str) -> list[str]:
        network = (["--init", str(context.weights)] if stage == "cascade" else
                   ["--cascade-weights", str(context.weights), *arch_arguments(context.sizes.arch[stage])])
        return ["train", stage, *network, "--data", f"photos:{photos}", "--out", str(folder / run), "--epochs", "2",
                "--steps-per-epoch", str(steps), "--batch-size", str(batch), "--patch", str(patch), "--val-patch", str(patch),
                "--val-items", "4", "--val-fraction", "0.25", "--early-stop", "0", "--deterministic",
                "--device", context.device.type, *extra]

    code = helpers_command(arguments("straight"), folder / "straight.log")
    if code:
        return {"ok": False, "error": f"uninterrupted run: {command_failure(code, folder / 'straight.log')}"}
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    killed = subprocess.Popen([sys.executable, "-c", CAPPED_HELPERS, str(context.memory_share), *arguments("killed")],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (folder / "killed" / "last.pt").exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_mid_run = killed.poll() is None
    killed.send_signal(signal.SIGKILL)
    errors = killed.communicate()[1].decode(errors="replace").strip().splitlines()
    if not (folder / "killed" / "last.pt").exists():
        return {"ok": False, "error": f"killed run wrote no checkpoint: {errors[-1] if errors else 'no output'}"}
    code = helpers_command(arguments("killed", "--resume"), folder / "resumed.log")
    if code:
        return {"ok": False, "error": f"resumed run: {command_failure(code, folder / 'resumed.log')}"}
    comparison = state_differences(folder / "straight" / "last.pt", folder / "killed" / "last.pt")
    ok = killed_mid_run and comparison["max_weight_difference"] == 0 and comparison["optimiser_equal"] and comparison["history_equal"]
    return {"ok": ok, "killed_mid_run": killed_mid_run, **comparison}


def arch_arguments(arch: dict[str, Any]) -> list[str]:
    """``--arch KEY=VALUE,...`` for a command line (nothing for the default architecture)."""
    return ["--arch", ",".join(f"{key}={value}" for key, value in arch.items())] if arch else []


def check_calibration(context: Context, photos: Path) -> dict[str, Any]:
    """The deblur ramp measured on six photos here and on the CPU: the same ramp, close shares."""
    files = sorted(photos.glob("*.png"))[:6]
    unet = load_model(context.weights / "unet.pt", expected_name="unet")
    with quiet(context.out / "calibration.log"):
        here, cpu = (calibrate_deblur_ramp(unet, files, device=str(device)) for device in (context.device, "cpu"))
    share = lambda calibration: [float(row["sharp photos: mean share"]) for row in calibration.table]  # noqa: E731
    difference = max(abs(first - second) for first, second in zip(share(here), share(cpu)))
    return {"ok": here.ramp == cpu.ramp and difference <= 0.02, "ramp": list(here.ramp), "cpu_ramp": list(cpu.ramp),
            "largest_share_difference": round(difference, 4), "photos": here.photos}


def check_video(context: Context) -> dict[str, Any]:
    """A short video through the restore command: the result has every frame, at twice the size."""
    width, height, count = context.sizes.video
    clip, restored = context.out / "video" / "clip.mp4", context.out / "video" / "restored" / "clip.mp4"
    frame = noisy(photo_frame(width, height))
    with video_writer(clip, 25.0, width, height) as write:
        for index in range(count):
            write(np.roll(frame, 4 * index, axis=1))
    arguments = ["restore", str(clip), "-o", str(restored), "--device", context.device.type, "--overwrite",
                 "--weights", str(context.weights)]
    code = helpers_command(arguments, context.out / "video" / "log.txt")
    if code:
        return {"ok": False, "error": command_failure(code, context.out / "video" / "log.txt")}
    frames = list(read_video_frames(restored))
    return {"ok": len(frames) == count and frames[0].shape == (2 * height, 2 * width, 3), "frames": len(frames),
            "size": list(frames[0].shape[:2])}


def check_cpu_checkpoint_resumes(context: Context) -> dict[str, Any]:
    """Epoch 1 on the CPU (no loss scaler is saved), epoch 2 resumed here (float16 AMP on a GPU)."""
    out = context.out / "cpu_then_here"
    arguments = lambda device, *extra: ["train", "dncnn", "--data", "sample", "--out", str(out), "--steps-per-epoch", "2",  # noqa: E731
                                        "--batch-size", "2", "--patch", "40", "--val-patch", "48", "--early-stop", "0",
                                        "--device", device, *arch_arguments(context.sizes.arch["dncnn"]), *extra]
    code = helpers_command(arguments("cpu", "--epochs", "1"), out / "cpu.log")
    if code:
        return {"ok": False, "error": f"CPU epoch: {command_failure(code, out / 'cpu.log')}"}
    code = helpers_command(arguments(context.device.type, "--epochs", "2", "--resume"), out / "here.log")
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    ok = code == 0 and saved["epoch"] == 2
    return {"ok": ok, **({} if ok else {"error": command_failure(code, out / "here.log")}), "scaler_state_saved": bool(saved["scaler"])}


# ----------------------------------------------------------------------------- running them


def run_check(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; an exception fails it (with its last line) without stopping the others."""
    print(f"{name}: running", flush=True)
    started = time.perf_counter()
    try:
        result = check()
    except Exception as error:  # one broken path must not hide the others' results
        result = {"ok": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                  "traceback": traceback.format_exc()}
    result["check_seconds"] = round(time.perf_counter() - started, 1)
    print(f"{name}: {'ok' if result['ok'] else 'FAILED'} in {result['check_seconds']} s", flush=True)
    return result


def _summary(result: dict[str, Any], width: int = 150) -> str:
    """A check's figures on one line (the JSON report has them all)."""
    shown = {key: value for key, value in result.items() if key not in ("ok", "traceback", "check_seconds")}
    text = json.dumps(shown, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def print_table(checks: dict[str, dict[str, Any]]) -> None:
    name_width = max(len(name) for name in checks)
    print(f"\n| {'check':<{name_width}} | result | seconds | figures |")
    print(f"|{'-' * (name_width + 2)}|--------|--------:|---------|")
    for name, result in checks.items():
        print(f"| {name:<{name_width}} | {'ok' if result['ok'] else 'FAILED':<6} | {result['check_seconds']:>7} | {_summary(result)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"))
    parser.add_argument("--weights", type=Path, default=None,
                        help="folder with dncnn.pt, unet.pt, edsr.pt (default: weights/; with --small, tiny untrained ones)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--small", action="store_true", help="small sizes (with --device cpu: check the script itself)")
    parser.add_argument("--memory-cap-gib", type=float, default=COLAB_GPUS["T4"].memory_gib,
                        help="GPU memory this run may use, a T4's by default (0: all of it)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; run it on a GPU (in Colab: Runtime > Change runtime "
              "type > GPU), or with --device cpu --small to check the script itself", file=sys.stderr)
        return 2
    # The --deterministic runs made in this process need deterministic cuBLAS, which reads this when it first starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.device(args.device)
    memory_share = 1.0
    if device.type == "cuda" and args.memory_cap_gib > 0:
        memory_share = min(1.0, args.memory_cap_gib * 2**30 / torch.cuda.get_device_properties(device).total_memory)
        torch.cuda.set_per_process_memory_fraction(memory_share, device)
    out = args.out.resolve()
    os.environ["IMAGE_REPAIR_CACHE"] = str(out / "cache")  # the sample set, built once, for this process and its children
    sizes = SMALL_SIZES if args.small else GPU_SIZES
    weights = args.weights or (tiny_weights(out / "tiny_weights", sizes.arch) if args.small else DEFAULT_WEIGHTS_DIR)
    context = Context(device, sizes, weights.resolve(), out, memory_share)
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "memory_share": round(memory_share, 3),
              "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "small": args.small}
    print(f"gpu_check: {json.dumps(header)}", flush=True)
    photos = write_photos(out / "photos", sizes.photo)
    checks: dict[str, Callable[[], dict[str, Any]]] = {
        "inference: clean, noisy, blurred; overflow redo": lambda: check_inference_equivalence(context),
        "inference: self-ensemble": lambda: check_self_ensemble(context),
        "inference: large noisy frame in tiles": lambda: check_tiled_frame(context),
        "inference: frames per second": lambda: check_throughput(context),
        **{f"train {stage}: steps at the notebook's size": (lambda stage=stage: check_training_steps(context, stage))
           for stage in ("dncnn", "unet", "edsr")},
        "train cascade: notebook 05, with and without checkpointing": lambda: check_train_cascade(context),
        **{f"train {stage}: killed and resumed, --deterministic, photos:": (lambda stage=stage: check_kill_and_resume(context, stage, photos))
           for stage in ("unet", "cascade")},
        "calibrate-deblur: here and on the CPU": lambda: check_calibration(context, photos),
        "restore a video (command)": lambda: check_video(context),
        "train dncnn: CPU checkpoint resumed here": lambda: check_cpu_checkpoint_resumes(context),
    }
    started = time.perf_counter()
    report = {"header": header, "checks": {name: run_check(name, check) for name, check in checks.items()}}
    report["seconds"] = round(time.perf_counter() - started, 1)
    with atomic_path(out / "report.json") as temp:
        temp.write_text(json.dumps(report, indent=2, default=str))
    print_table(report["checks"])
    failed = [name for name, result in report["checks"].items() if not result["ok"]]
    print(f"\ngpu_check: {len(checks) - len(failed)}/{len(checks)} checks passed in {report['seconds']} s; report in "
          f"{out / 'report.json'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
