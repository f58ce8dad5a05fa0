"""The restoration cascade: DnCNN (denoise) -> UNet (deblur) -> EDSR (x2) -> unsharp mask, on any image size.

``Restorer`` runs the stages in that fixed order (any of them can be switched off), clamping to [0, 1]
between stages, on images, batches of frames or tensors, whole or in tiles.

Tiling ("crop the padding"): the image is cut into a grid of equal cores of at most ``tile`` x ``tile``
pixels; each core is run through the WHOLE cascade together with at least ``tile_overlap`` pixels of
real image around it (or the image border, which the untiled run sees too), and only the core of the
result is kept, so every output pixel comes from exactly one tile and no blending weights are needed.
All windows of an image have one size (at the border they slide inward instead of shrinking), so
cuDNN's autotuner tunes the networks once per image size rather than for every edge tile. Windows
start on multiples of the UNet's 2**depth, so its max-pooling grid and bottom/right padding match the
untiled run; the only difference left is what lies beyond ``tile_overlap`` pixels of the cascade's
receptive field. The image (and the assembled result) stay in host memory: only one padded tile at a
time is moved to the device and its result moved back.

Gates (``helpers.gates``): DnCNN's correction is weighted by each frame's estimated noise level and the UNet's
by how much of a correction the frame asks for, so that clean and sharp frames are left alone. Both are decided
on the whole frame, on the device the stages run on: the noise level is estimated first (on the frames already
moved there, or on a tiled frame's measured centre); untiled frames are gated between the UNet and EDSR without
leaving the device, and tiled runs first run DnCNN and the UNet over all tiles, summing the deblur measure's
two maps over each tile's core on the device, gate the UNet's output on the whole frame, then run EDSR and the
unsharp mask.

Reads from the device (each a synchronisation on a GPU), per batch of frames or per tile: whether any frame is
noisy enough for DnCNN (clean batches skip it, which saves a quarter of the time), whether every frame is finite
(an overflowing one is redone in float32), and the results themselves. Nothing else: the gates' blends are
exact at shares 0 and 1 (``torch.lerp``), so no share is read to skip them, and the networks' input range
checks are left out inside the cascade (its input was checked once, each stage's input is clamped).
``from_weights`` takes the deblur ramp the UNet's weights file records (``DEBLUR_RAMP`` when it records none).
``denoise="always"`` and ``deblur="always"`` keep all of the correction on every frame.

Strength (the user's dial, on top of the gates): ``strength=S`` blends the cascade's result with the input
upscaled by plain bicubic interpolation (S=1: the cascade, S=0: bicubic), on the whole frame after any
tiling; ``strength={"unet": 0.6, ...}`` scales each named stage's correction (its output minus its input;
EDSR's: minus its input upscaled by bicubic) times whatever share its gate gave.

Precision: ``helpers.inference.inference_dtype`` picks autocast float16 on CUDA (bfloat16 on CPUs
that compute it natively), float32 otherwise or with ``fp32=True``. A frame or tile whose
reduced-precision result holds inf/NaN in any stage is redone in float32, with a warning naming it.

Memory: on a CPU the Restorer switches glibc's malloc to keep freed blocks
(``helpers.inference.keep_freed_memory``), process-wide: without it every large activation is
unmapped when freed and faulted in again by the next layer.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import load_weights
from .checks import check_image_batch, range_checked_upstream
from .gates import DEBLUR_RAMP, checked_ramp, deblur_maps, deblur_ratio, deblur_weights, denoise_weights, ramp_weights
from .inference import (
    autocast_for,
    cudnn_autotuning,
    inference_dtype,
    keep_freed_memory,
    pick_device,
    prepare_for_inference,
    prepare_input,
)
from .io import image_to_tensor, tensor_to_image
from .models import UNet, UnsharpMask

__all__ = ["DEFAULT_WEIGHTS_DIR", "STAGES", "NETWORK_STAGES", "FRAME_SIZE", "Restorer", "bicubic", "dihedral_average",
           "parse_strength"]

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
STAGES = ("dncnn", "unet", "edsr", "unsharp")
NETWORK_STAGES = ("dncnn", "unet", "edsr")
FRAME_SIZE = (640, 360)  # (width, height) the networks were trained for; portrait frames use (360, 640)
# Untiled, EDSR's upsampler alone holds 256 x 4 bytes per input pixel: a 4K input needs over 8 GB. Inputs
# larger than 1280x720 are therefore tiled automatically (unless a tile size is given or auto_tile=False).
AUTO_TILE_ABOVE_PIXELS = 1280 * 720
AUTO_TILE_SIZE = 512


def dihedral_average(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Self-ensemble (Lim et al., EDSR+, 2017): the float32 mean of ``model`` over the 8 flips and transposes of
    ``images``, each output mapped back. A network is not exactly equivariant to them; averaging its 8 answers
    cancels part of its error. Hand-written: six lines that torchvision and kornia do not offer as one call.
    Transposed views are copied into the input's memory layout (channels_last stays channels_last)."""
    layout = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    total = torch.zeros((), device=images.device)
    for transpose in (False, True):
        view = images.transpose(-2, -1).contiguous(memory_format=layout) if transpose else images
        for dims in ((), (-1,), (-2,), (-2, -1)):
            output = model(view.flip(dims)).float().flip(dims)
            total = total + (output.transpose(-2, -1) if transpose else output)
    return total / 8


def parse_strength(strength: float | Mapping[str, float]) -> tuple[float, dict[str, float]]:
    """(overall strength, {stage: strength}) from ``Restorer``'s ``strength``; ValueError unless each is in [0, 1]."""
    overall, per_stage = (1.0, dict(strength)) if isinstance(strength, Mapping) else (strength, {})
    unknown = [stage for stage in per_stage if stage not in STAGES]
    if unknown:
        raise ValueError(f"strength: expected stages among {', '.join(STAGES)}, received {', '.join(map(str, unknown))}")
    for name, value in [("strength", overall), *((f"strength of {stage}", value) for stage, value in per_stage.items())]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a number from 0 to 1, received {value!r}")
    return float(overall), {stage: float(value) for stage, value in per_stage.items() if value != 1}


def bicubic(images: torch.Tensor, scale: int) -> torch.Tensor:
    """``images`` upscaled ``scale`` times by bicubic interpolation, clamped to [0, 1] (scale 1: unchanged)."""
    if scale == 1:
        return images
    return nn.functional.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def _canonical_stages(stages: Iterable[str]) -> tuple[str, ...]:
    """Validate stage names and return them in the cascade's fixed order."""
    requested = [stage.strip().lower() for stage in stages if stage.strip()]
    unknown = sorted(set(requested) - set(STAGES))
    if unknown:
        raise ValueError(f"stages: unknown {unknown}, expected a subset of {', '.join(STAGES)}")
    if not requested:
        raise ValueError(f"stages: none given, expected a subset of {', '.join(STAGES)}")
    return tuple(stage for stage in STAGES if stage in requested)


def _size_multiple(model: nn.Module) -> int:
    """Grid a network's output depends on: the UNet pools 2**depth times, the others are shift-equivariant."""
    return 2**model.depth if isinstance(model, UNet) else 1


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tile_spans(length: int, tile: int, overlap: int, multiple: int, min_size: int) -> list[tuple[int, int, int, int]]:
    """(core_start, core_end, window_start, window_end) along one axis; every window has the same size.

    ``tile`` and ``overlap`` must already be multiples of ``multiple``. The axis gets the fewest equal
    cores (multiples of ``multiple``, the last one shorter) that fit in ``tile``; each window is its
    core with ``overlap`` on both sides, moved inward at the image border. Windows start on multiples
    of ``multiple``, so the last one can end at the image's end only if the window size is congruent
    to ``length`` modulo ``multiple``: that remainder is added to every window (and taken from the core
    limit, keeping windows within ``tile + 2 * overlap``).
    """
    if length <= tile:
        return [(0, length, 0, length)]
    remainder = length % multiple
    core_limit = tile if remainder == 0 else max(multiple, tile - multiple)
    cores = -(-length // core_limit)
    core = _round_up(-(-length // cores), multiple)
    window = core + 2 * overlap + remainder
    window += _round_up(max(0, min_size - window), multiple)
    if window >= length:
        return [(0, length, 0, length)]
    spans = []
    for start in range(0, length, core):
        window_start = max(0, min(start - overlap, length - window))
        spans.append((start, min(start + core, length), window_start, window_start + window))
    return spans


@dataclass(frozen=True)
class _Gates:
    """What the gates ask of one run of the cascade on a batch of frames.

    ``denoise``: each frame's share of DnCNN's correction, on the device (None: all of it); ``run_dncnn``: whether
    DnCNN runs at all (False when no frame is noisy enough); ``deblur_ramp``: gate the UNet's correction inside
    this run with that ramp (whole frames), or None (all of it, or tiles, gated on the whole frame outside).
    """

    denoise: torch.Tensor | None = None
    run_dncnn: bool = True
    deblur_ramp: tuple[float, float] | None = None

    def of_frames(self, frames: torch.Tensor) -> _Gates:
        """The gates of some frames of the batch (indices on the device)."""
        return self if self.denoise is None else replace(self, denoise=self.denoise[frames])


class Restorer:
    """DnCNN -> UNet -> EDSR -> unsharp mask on RGB images of any size (see the module docstring).

    Args:
        models: networks by stage name ('dncnn', 'unet', 'edsr'); only those of enabled stages are used.
        stages: the stages to run, any subset of ``STAGES``; they always run in the cascade's order.
        scale: 2 runs EDSR (the output is twice the input size); 1 enhances in place without EDSR.
        device: 'auto' (CUDA when present), 'cpu' or 'cuda'.
        tile: core size of a tile in input pixels; 0 processes whole images (see ``auto_tile``).
        auto_tile: with ``tile=0``, still tile inputs larger than 1280x720 in ``AUTO_TILE_SIZE`` tiles.
        tile_overlap: pixels of context around each tile (rounded up to the UNet's 2**depth).
        fp32: never use reduced precision.
        unsharp: the sharpening stage (default ``UnsharpMask()``).
        resize_to_frame: first resize inputs to 640x360 (360x640 if portrait), with a warning.
        half_dtype: reduced-precision type for autocast; default: ``helpers.inference.inference_dtype``
            (float16 on CUDA). Tests force ``torch.bfloat16`` on CPU to exercise the float32 fallback.
        denoise: 'auto' weights DnCNN by each frame's estimated noise level (module docstring);
            'always' applies it in full to every frame.
        deblur: 'auto' weights the UNet's correction by how much each frame asks for (module docstring);
            'always' keeps all of it.
        deblur_ramp: (low, high) of that weighting; default ``DEBLUR_RAMP`` (``from_weights``: the one the UNet's
            file records, if any).
        self_ensemble: network stages run on the 8 flips and transposes of their input, the outputs mapped back
            and averaged (``dihedral_average``): better results for 8x that stage's time.
        strength: 1 (default) the cascade's result; S in [0, 1) blends it with the bicubic-upscaled input;
            {stage: S, ...} keeps that share of each named stage's correction, on top of its gate.
    """

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        stages: Sequence[str] = STAGES,
        scale: int = 2,
        device: str | torch.device = "auto",
        tile: int = 0,
        tile_overlap: int = 32,
        fp32: bool = False,
        unsharp: UnsharpMask | None = None,
        resize_to_frame: bool = False,
        half_dtype: torch.dtype | None = None,
        auto_tile: bool = True,
        denoise: str = "auto",
        deblur: str = "auto",
        deblur_ramp: tuple[float, float] = DEBLUR_RAMP,
        self_ensemble: Sequence[str] = (),
        strength: float | Mapping[str, float] = 1.0,
    ) -> None:
        self.stages = _canonical_stages(stages)
        self.strength, self.stage_strength = parse_strength(strength)
        unknown = [stage for stage in self_ensemble if stage not in NETWORK_STAGES]
        if unknown:
            raise ValueError(f"self_ensemble: expected stages among {', '.join(NETWORK_STAGES)}, received {', '.join(unknown)}")
        self.self_ensemble = frozenset(self_ensemble)
        if "edsr" in self.stages and scale == 1:
            raise ValueError("scale 1 enhances in place: drop the 'edsr' stage or ask for scale 2")
        if "edsr" not in self.stages and scale != 1:
            raise ValueError(f"scale {scale} needs the 'edsr' stage (stages given: {', '.join(self.stages)})")
        missing = [stage for stage in self.stages if stage in NETWORK_STAGES and stage not in models]
        if missing:
            raise ValueError(f"no network given for stage(s) {', '.join(missing)}")
        if "edsr" in self.stages and getattr(models["edsr"], "scale", scale) != scale:
            raise ValueError(f"scale {scale} asked for, but the EDSR network upscales x{models['edsr'].scale}")
        for name, mode in (("denoise", denoise), ("deblur", deblur)):
            if mode not in ("auto", "always"):
                raise ValueError(f"{name}: expected 'auto' or 'always', received {mode!r}")
        if tile < 0 or tile_overlap < 0:
            raise ValueError(f"tile and tile_overlap: expected >= 0, received {tile} and {tile_overlap}")
        self.scale = scale
        self.denoise = denoise
        self.deblur = deblur
        self.deblur_ramp = checked_ramp(deblur_ramp, "deblur_ramp")
        self.device = pick_device(str(device))
        if self.device.type == "cpu":
            keep_freed_memory()  # reuse activations instead of faulting them in again, layer after layer
        self.dtype = None if fp32 else (half_dtype or inference_dtype(self.device))
        self.resize_to_frame = resize_to_frame
        self.models: dict[str, nn.Module] = {
            stage: prepare_for_inference(models[stage], self.device) for stage in self.stages if stage in NETWORK_STAGES
        }
        if "unsharp" in self.stages:
            self.models["unsharp"] = (unsharp or UnsharpMask()).to(self.device).eval()
        self.min_size = max((getattr(model, "min_size", 1) for model in self.models.values()), default=1)
        self.size_multiple = math.lcm(*(_size_multiple(model) for model in self.models.values()))
        self.tile = _round_up(tile, self.size_multiple)
        self.auto_tile = auto_tile
        self.tile_overlap = _round_up(tile_overlap, self.size_multiple)

    @classmethod
    def from_weights(cls, weights_dir: str | os.PathLike | None = None, **options) -> Restorer:
        """Load the enabled stages' networks from ``weights_dir`` (default ``DEFAULT_WEIGHTS_DIR``)/<stage>.pt.

        Weights exported by a cascade fine-tuning (``helpers.cascade``) record the unsharp mask they were
        trained with; it is used unless ``unsharp`` is given. A UNet file may record its ``deblur_ramp``, used
        unless one is given.
        """
        weights_dir = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
        stages = _canonical_stages(options.get("stages", STAGES))
        loaded = {}
        for stage in (stage for stage in stages if stage in NETWORK_STAGES):
            path = weights_dir / f"{stage}.pt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: weights not found; a weights folder holds dncnn.pt, unet.pt and edsr.pt written by "
                    "helpers.checkpoint.export_weights: make the demo weights with `bash weights/train_demo.sh`, "
                    "or train your own (notebooks 02-04) and pass their folder with --weights DIR"
                )
            loaded[stage] = load_weights(path, expected_name=stage)  # the network and what its file records, one read
        if "unet" in loaded and "deblur_ramp" not in options:
            options["deblur_ramp"] = loaded["unet"].deblur_ramp or DEBLUR_RAMP
        if "unsharp" in stages and "edsr" in loaded and "unsharp" not in options:
            options["unsharp"] = loaded["edsr"].unsharp
        return cls({stage: weights.model for stage, weights in loaded.items()}, **options)

    # ---- public entry points -------------------------------------------------------------------

    def restore(self, image: np.ndarray) -> np.ndarray:
        """Restore one RGB uint8 image (H, W, 3); returns uint8 (scale*H', scale*W', 3)."""
        return tensor_to_image(self.restore_tensor(image_to_tensor(image))[0])

    def restore_batch(self, images: Sequence[np.ndarray], first_frame: int = 0) -> list[np.ndarray]:
        """Restore equally sized RGB uint8 images (video frames) as one batch; returns a list of uint8.

        ``first_frame`` numbers the frames in warnings (the batch's position in a video).
        """
        shapes = {image.shape for image in images}
        if len(shapes) != 1:
            raise ValueError(f"restore_batch: expected images of one size, received shapes {sorted(shapes)}")
        return list(tensor_to_image(self.restore_tensor(image_to_tensor(np.stack(images)), first_frame)))

    def restore_frames(
        self, frames: Iterable[np.ndarray], streams: int | None = None, batch_size: int | None = None
    ) -> Iterator[np.ndarray]:
        """Restore a stream of equally sized RGB uint8 frames (a video's), yielding them in order, frames in flight.

        Throughput rather than latency: worker threads restore ``streams`` batches of ``batch_size``
        frames at once, each stream with an equal share of torch's threads, while the caller's thread
        decodes the next frames (``frames`` is consumed here) and writes the previous results (between
        ``next`` calls). Defaults: see ``video_streams`` and ``video_batch_size``.
        """
        streams = streams or self.video_streams()
        batch_size = batch_size or self.video_batch_size()
        threads = torch.get_num_threads()
        share = max(1, threads // streams)
        pool = ThreadPoolExecutor(streams, thread_name_prefix="restore", initializer=torch.set_num_threads, initargs=(share,))
        pending: deque[Future[list[np.ndarray]]] = deque()
        try:
            iterator, first_frame = iter(frames), 0
            while batch := list(islice(iterator, batch_size)):
                pending.append(pool.submit(self.restore_batch, batch, first_frame))
                first_frame += len(batch)
                if len(pending) > streams:  # all streams busy and the next batch decoded: hand out the oldest
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)  # the workers' share changed torch's global count

    def video_streams(self) -> int:
        """Batches in flight for videos: 2 on a CPU with 2+ threads (each stream runs on half of them), else 1."""
        return 2 if self.device.type == "cpu" and torch.get_num_threads() >= 2 else 1

    def video_batch_size(self) -> int:
        """Frames per batch for videos: 4 on CUDA (keeps the GPU busy), 1 on a CPU (streams share the cores instead)."""
        return 4 if self.device.type == "cuda" else 1

    def restore_stages(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Every stage's output as uint8, in order: {'input', then each stage run}; for plots.

        'input' is what the cascade saw (after ``resize_to_frame``, if set).
        """
        outputs = self._run(image_to_tensor(image), keep_stages=True)
        return {name: tensor_to_image(tensor[0]) for name, tensor in outputs.items()}

    def restore_tensor(self, batch: torch.Tensor, first_frame: int = 0) -> torch.Tensor:
        """Restore a float (N, 3, H, W) batch in [0, 1]; returns float32 (N, 3, s*H', s*W') on the batch's device.

        Each image is restored independently (networks in eval mode, no cross-image statistics).
        """
        return self._run(batch, keep_stages=False, first_frame=first_frame)[self.stages[-1]]

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError when an image of height x width is too small for the enabled networks."""
        if min(height, width) < self.min_size:
            needs = [f"{stage} {model.min_size}" for stage, model in self.models.items() if getattr(model, "min_size", 1) > 1]
            raise ValueError(
                f"image of {width}x{height} pixels is too small: the networks need at least "
                f"{self.min_size}x{self.min_size} ({', '.join(needs)})"
            )

    # ---- internals ---------------------------------------------------------------------------

    def _run(self, batch: torch.Tensor, keep_stages: bool, first_frame: int = 0) -> dict[str, torch.Tensor]:
        """Validate, optionally resize, then run whole or tiled; returns {'input'?, stage: tensor} on the batch's device."""
        check_image_batch(batch, name="Restorer input")
        if self.resize_to_frame:
            batch = self._resize_to_frame(batch)
        self.check_input_size(*batch.shape[-2:])
        with torch.inference_mode(), cudnn_autotuning(self.device), range_checked_upstream():
            batch = batch.float()
            tile = self._tile_for(*batch.shape[-2:])
            outputs = self._run_tiled(batch, tile, keep_stages, first_frame) if tile else self._run_whole(batch, keep_stages, first_frame)
            if self.strength != 1:
                last = self.stages[-1]
                outputs[last] = torch.lerp(bicubic(batch, self.scale), outputs[last], self.strength)
        return {"input": batch, **outputs} if keep_stages else outputs

    @property
    def _gates_deblur(self) -> bool:
        return self.deblur == "auto" and "unet" in self.stages

    def _denoise_gate(self, images: torch.Tensor) -> _Gates:
        """The noise gate for a batch: each frame's share of DnCNN, measured on the device, and whether DnCNN runs."""
        if self.denoise != "auto" or "dncnn" not in self.stages:
            return _Gates()
        share = denoise_weights(images, device=self.device)
        return _Gates(share, run_dncnn=bool(share.any()))  # the gate's one read from the device: clean batches skip DnCNN

    def _run_whole(self, batch: torch.Tensor, keep_stages: bool, first_frame: int) -> dict[str, torch.Tensor]:
        """Every stage and both gates on the device: the frames go there once, and only what is kept comes back."""
        inputs = prepare_input(batch, self.device)
        gates = replace(self._denoise_gate(inputs), deblur_ramp=self.deblur_ramp if self._gates_deblur else None)
        outputs = self._on_device(inputs, self.stages, keep_stages, "image", first_frame, gates)
        return {stage: tensor.to(batch.device) for stage, tensor in outputs.items()}

    def _run_tiled(self, batch: torch.Tensor, tile: int, keep_stages: bool, first_frame: int) -> dict[str, torch.Tensor]:
        """The stages tile by tile, the deblur gate decided on the whole frame between the UNet and EDSR."""
        gates = self._denoise_gate(batch)  # measured on the frame's centre, moved to the device by the estimate
        if not self._gates_deblur:
            return self._tiles(batch, self.stages, tile, keep_stages, first_frame, gates)[0]
        head = tuple(stage for stage in self.stages if STAGES.index(stage) <= STAGES.index("unet"))
        outputs, sums = self._tiles(batch, head, tile, True, first_frame, gates, measure_deblur=True)
        pixels = batch.shape[-2] * batch.shape[-1]
        share = ramp_weights(deblur_ratio(sums[0] / pixels, sums[1] / pixels), self.deblur_ramp).to(batch.device)
        before = outputs.get("dncnn", batch)
        share = share * self.stage_strength.get("unet", 1.0)
        outputs["unet"] = torch.lerp(before, outputs["unet"], share.view(-1, 1, 1, 1))
        if tail := self.stages[len(head) :]:
            outputs.update(self._tiles(outputs["unet"], tail, tile, keep_stages, first_frame, _Gates())[0])
        return outputs if keep_stages else {self.stages[-1]: outputs[self.stages[-1]]}

    def _resize_to_frame(self, batch: torch.Tensor) -> torch.Tensor:
        """Resize to 640x360 (360x640 for portrait) with antialiased bicubic, warning about any aspect change."""
        height, width = batch.shape[-2:]
        target_width, target_height = FRAME_SIZE if width >= height else FRAME_SIZE[::-1]
        if (width, height) == (target_width, target_height):
            return batch
        note = f"resized {width}x{height} -> {target_width}x{target_height} for the cascade"
        if abs(width / height - target_width / target_height) > 0.01:
            note += f" (aspect ratio changed from {width / height:.2f} to {target_width / target_height:.2f})"
        warnings.warn(note, stacklevel=3)
        resized = nn.functional.interpolate(
            batch.float(), size=(target_height, target_width), mode="bicubic", antialias=True, align_corners=False
        )
        return resized.clamp_(0, 1)

    def _tile_for(self, height: int, width: int) -> int:
        """The tile size for an input: the one asked for, else automatic tiles for inputs above 1280x720."""
        if self.tile or not self.auto_tile or height * width <= AUTO_TILE_ABOVE_PIXELS:
            return self.tile
        return _round_up(AUTO_TILE_SIZE, self.size_multiple)

    def _tiles(
        self, batch: torch.Tensor, stages: tuple[str, ...], tile: int, keep_stages: bool, first_frame: int, gates: _Gates,
        measure_deblur: bool = False,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """``stages`` tile by tile: each padded window goes to the device and its core comes back.

        With ``measure_deblur`` (the stages end with the UNet), also the sums over every core of the deblur
        measure's two maps (``helpers.gates.deblur_maps``), (2, N) on the device: the whole frame's measure.
        """
        height, width = batch.shape[-2:]
        rows = _tile_spans(height, tile, self.tile_overlap, self.size_multiple, self.min_size)
        columns = _tile_spans(width, tile, self.tile_overlap, self.size_multiple, self.min_size)
        outputs: dict[str, torch.Tensor] = {}
        sums = torch.zeros(2, batch.shape[0], device=self.device) if measure_deblur else None
        for top, bottom, window_top, window_bottom in rows:
            for left, right, window_left, window_right in columns:
                inputs = prepare_input(batch[..., window_top:window_bottom, window_left:window_right], self.device)
                label = f"tile rows {top}-{bottom}, columns {left}-{right}"
                results = self._on_device(inputs, stages, keep_stages, label, first_frame, gates)
                core = (..., slice(top - window_top, bottom - window_top), slice(left - window_left, right - window_left))
                if sums is not None:
                    maps = deblur_maps(results.get("dncnn", inputs), results["unet"])
                    sums += torch.stack([values[core].sum(dim=(-2, -1)) for values in maps])
                for stage, result in results.items():
                    factor = self._stage_scale(stage)
                    if stage not in outputs:
                        outputs[stage] = batch.new_empty((*batch.shape[:2], height * factor, width * factor))
                    outputs[stage][..., top * factor : bottom * factor, left * factor : right * factor] = result[
                        ...,
                        (top - window_top) * factor : (bottom - window_top) * factor,
                        (left - window_left) * factor : (right - window_left) * factor,
                    ]
        return outputs, sums

    def _stage_scale(self, stage: str) -> int:
        """Size factor of a stage's output relative to the input."""
        return self.scale if STAGES.index(stage) >= STAGES.index("edsr") else 1

    def _on_device(
        self, inputs: torch.Tensor, stages: tuple[str, ...], keep_stages: bool, label: str, first_frame: int, gates: _Gates,
    ) -> dict[str, torch.Tensor]:
        """``stages`` on a device batch (all frames of an image or tile); float32 outputs on the device.

        Frames whose reduced-precision result holds inf/NaN are redone in float32, with a warning naming them.
        """
        outputs, finite = self._cascade(inputs, stages, self.dtype, keep_stages, gates)
        all_finite = bool(finite.all())  # the window's one read from the device before its results
        if self.dtype is not None and not all_finite:
            bad = torch.nonzero(~finite).flatten()
            warnings.warn(
                f"{label}, frame(s) {[first_frame + index for index in bad.tolist()]}: non-finite values in {self.dtype} inference, redone in float32",
                stacklevel=5,
            )
            redone, finite = self._cascade(inputs[bad], stages, None, keep_stages, gates.of_frames(bad))
            for stage, tensor in redone.items():
                outputs[stage][bad] = tensor
            all_finite = bool(finite.all())
        if not all_finite:
            raise RuntimeError(f"{label}: non-finite values in float32 inference; the weights are broken")
        return outputs

    def _cascade(
        self, images: torch.Tensor, stages: tuple[str, ...], dtype: torch.dtype | None, keep_stages: bool, gates: _Gates,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``stages`` on a device batch; returns float32 outputs (every stage or the last) and per-frame finiteness.

        The networks run in ``dtype`` (autocast), the gates' blends in float32. Finiteness is checked before each
        clamp, since clamping would turn inf into a plausible 0 or 1.
        """
        finite = torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
        outputs = {}
        for stage in stages:
            before = images.float()
            if stage == "dncnn" and not gates.run_dncnn:
                images = before  # no frame is noisy enough: the stage passes its input on
            else:
                model = self.models[stage]
                with autocast_for(self.device, dtype):
                    images = dihedral_average(model, images) if stage in self.self_ensemble else model(images).float()
                if stage == "dncnn" and gates.denoise is not None:  # exact at shares 0 and 1
                    images = torch.lerp(before, images, gates.denoise.view(-1, 1, 1, 1))
            finite &= torch.isfinite(images).flatten(1).all(dim=1)
            images = images.clamp(0, 1)
            if stage == "unet" and gates.deblur_ramp is not None:  # a blurred frame keeps the UNet's output exactly
                images = torch.lerp(before, images, deblur_weights(before, images, gates.deblur_ramp).view(-1, 1, 1, 1))
            gated_later = stage == "unet" and self._gates_deblur and gates.deblur_ramp is None  # tiles: in _run_tiled
            if stage in self.stage_strength and not gated_later:
                baseline = bicubic(before, self.scale if stage == "edsr" else 1)
                images = torch.lerp(baseline, images, self.stage_strength[stage])
            if keep_stages:
                outputs[stage] = images
        outputs[stages[-1]] = images
        return outputs, finite
