"""End-to-end fine-tuning of the cascade: DnCNN -> UNet -> EDSR (-> unsharp mask) trained as one on its 2x output.

Trained alone, each network learns its own task on its own inputs; chained, they do not cooperate (the
UNet never saw the DnCNN's output, EDSR never saw the UNet's). ``Cascade`` chains the trained networks as
``helpers.pipeline.Restorer`` does (each sees its predecessor's output clamped to [0, 1]) and returns
every stage's output, so that ``CascadeLoss`` can add auxiliary per-stage losses to the loss of the final
output: the DnCNN's output against the noise-free blurry input, the UNet's against the sharp low-res patch,
EDSR's against the sharp high-res patch. Each network keeps doing its own job, so ``--stages`` still means
what it says after fine-tuning. Stages can be frozen, the unsharp mask's amount can be learned within
bounds, and every stage can be gradient-checkpointed to save memory (``needs_checkpointing`` says whether a
run needs it, from a memory estimate: it costs a third more compute).

Reproducible on a GPU: under ``torch.use_deterministic_algorithms`` (``--deterministic``) EDSR computes the
gradient of its bicubic skip, whose CUDA kernel adds with atomics in no fixed order, as two matrix products
(``helpers.models.BicubicWithMatrixBackward``). A checkpointed stage's recomputation leaves out the networks'
input range checks (the forward pass ran them, or left them out, on the same inputs; a check reads two numbers
back from a GPU: a synchronisation per stage and step).

Training is ``helpers.training.fit`` (AMP, plateau schedule, early stopping, exact resume, DDP): the cascade
is one more model to it, with datasets from ``helpers.recipes.build_datasets("cascade", config)``. ``export_cascade`` writes the three weight files ``Restorer`` loads, each with a
record of the fine-tuning and its origin. CLI: ``python -m helpers train cascade --init weights/ --data
... --out runs/cascade``.

A cascade dataset gives ``(input, targets)`` items: the degraded low-res input (3, h, w) and a dict of
(3, ., .) tensors: ``"final"`` the sharp high-res patch (3, 2h, 2w), ``"blurry_lr"`` the noise-free blurry
low-res patch (the DnCNN's target) and ``"sharp_lr"`` the sharp low-res patch (the UNet's target).
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .checkpoint import CheckpointError, export_weights, load_checkpoint, load_model
from .checks import range_checked_upstream
from .losses import build_loss
from .models import UnsharpMask, build_model
from .pipeline import NETWORK_STAGES
from .profiling import ADAM_BYTES_PER_PARAMETER, COLAB_GPUS, TrainingEstimate, saved_activation_bytes
from .training import PRIMARY

__all__ = [
    "UNSHARP_MODES",
    "AUX_TARGETS",
    "DEFAULT_CASCADE_LOSS",
    "LearnableUnsharp",
    "Cascade",
    "CascadeLoss",
    "build_cascade_loss",
    "load_cascade",
    "export_cascade",
    "needs_checkpointing",
]

UNSHARP_MODES = ("fixed", "learnable", "off")
# Stage -> the target its output is compared with in the auxiliary loss (keys of a cascade dataset's targets).
AUX_TARGETS = {"dncnn": "blurry_lr", "unet": "sharp_lr", "edsr": PRIMARY}
DEFAULT_CASCADE_LOSS: dict[str, Any] = {
    "final": {"weights": {"mse": 0.0, "l1": 1.0}},  # the cascade's output against the sharp high-res patch
    "stages": {"weights": {"mse": 0.0, "l1": 1.0}},  # each auxiliary term (L1: the same scale for all three)
    "stage_weights": {"dncnn": 0.5, "unet": 0.5, "edsr": 0.5},  # 0 switches a stage's auxiliary term off
}


class LearnableUnsharp(nn.Module):
    """The unsharp mask with a learnable amount, bounded to (0, max_amount) by a sigmoid.

    Args:
        sigma, threshold: as ``helpers.models.UnsharpMask`` (fixed).
        amount: the starting amount, strictly inside (0, max_amount).
        max_amount: the upper bound.
    """

    def __init__(self, sigma: float = 1.0, amount: float = 0.5, threshold: float = 0.0, max_amount: float = 2.0) -> None:
        super().__init__()
        if not 0.0 < amount < max_amount:
            raise ValueError(f"learnable unsharp amount: expected 0 < amount < max_amount, received {amount} and {max_amount}")
        self.mask = UnsharpMask(sigma, amount, threshold)
        self.max_amount = float(max_amount)
        self.logit = nn.Parameter(torch.logit(torch.tensor(amount / max_amount, dtype=torch.float64)).float())

    def amount(self) -> torch.Tensor:
        """The current amount, a differentiable scalar in (0, max_amount)."""
        return self.max_amount * torch.sigmoid(self.logit)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images + self.amount() * self.mask.detail(images)).clamp(0, 1)

    def as_unsharp_mask(self) -> UnsharpMask:
        """The fixed filter with the learned amount: what ``Restorer`` runs."""
        return UnsharpMask(self.mask.sigma, float(self.amount().detach()), self.mask.threshold)


def _is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


class Cascade(nn.Module):
    """DnCNN -> UNet -> EDSR -> unsharp mask as one trainable module that returns every stage's output.

    Args:
        networks: the stage networks by name ("dncnn", "unet", "edsr"), e.g. trained weights to fine-tune.
        unsharp: "fixed" (default: the seed's filter, ``UnsharpMask(amount=unsharp_amount)``, untrained),
            "learnable" (its amount is a parameter in (0, ``max_unsharp_amount``)), or "off" (the final
            output is EDSR's).
        unsharp_amount: the fixed amount, or the learnable one's starting value.
        max_unsharp_amount: upper bound of a learnable amount.
        freeze: stages whose weights stay as they are.
        checkpointing: recompute each stage's activations during the backward pass instead of keeping
            them (``torch.utils.checkpoint``): the memory of one stage at a time instead of all three, for
            one more forward pass. Gradients are the same.

    ``forward`` returns {"dncnn", "unet", "edsr": each network's own (unclamped) output, "final": the
    cascade's output}. Batch-norm statistics (the DnCNN's) stay at their trained values in training too:
    fine-tuning batches are small, and checkpointing runs each forward twice, which would update them twice.
    A frozen first stage runs without autograd (nothing before it trains).
    """

    name = "cascade"

    def __init__(
        self,
        networks: Mapping[str, nn.Module],
        unsharp: str = "fixed",
        unsharp_amount: float = 0.5,
        max_unsharp_amount: float = 2.0,
        freeze: Sequence[str] = (),
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        missing = [stage for stage in NETWORK_STAGES if stage not in networks]
        unknown = sorted(set(freeze) - set(NETWORK_STAGES))
        if missing or unknown:
            raise ValueError(f"cascade: networks missing for {missing}, unknown stages to freeze {unknown}; stages are {NETWORK_STAGES}")
        if unsharp not in UNSHARP_MODES:
            raise ValueError(f"cascade unsharp: expected one of {UNSHARP_MODES}, received {unsharp!r}")
        self.frozen = tuple(stage for stage in NETWORK_STAGES if stage in freeze)
        if len(self.frozen) == len(NETWORK_STAGES) and unsharp != "learnable":
            raise ValueError("cascade: every stage is frozen, nothing would train")
        self.networks = nn.ModuleDict({stage: networks[stage] for stage in NETWORK_STAGES})
        for stage, network in self.networks.items():
            network.requires_grad_(stage not in self.frozen)
        self.unsharp_mode, self.unsharp_amount, self.max_unsharp_amount = unsharp, float(unsharp_amount), float(max_unsharp_amount)
        self.unsharp: nn.Module | None = {
            "fixed": lambda: UnsharpMask(amount=unsharp_amount),
            "learnable": lambda: LearnableUnsharp(amount=unsharp_amount, max_amount=max_unsharp_amount),
            "off": lambda: None,
        }[unsharp]()
        self.checkpointing = checkpointing
        self.train()

    @property
    def arch(self) -> dict[str, Any]:
        """Networks' architectures and the cascade's options: enough to rebuild it (``from_arch``)."""
        return {
            "name": self.name,
            "kwargs": {
                "networks": {stage: network.arch for stage, network in self.networks.items()},
                "unsharp": self.unsharp_mode,
                "unsharp_amount": self.unsharp_amount,
                "max_unsharp_amount": self.max_unsharp_amount,
                "freeze": list(self.frozen),
            },
        }

    @classmethod
    def from_arch(cls, kwargs: Mapping[str, Any], checkpointing: bool = False) -> Cascade:
        """A cascade of freshly built networks with the recorded architecture (weights to be loaded)."""
        networks = {stage: build_model(arch["name"], **arch["kwargs"]) for stage, arch in kwargs["networks"].items()}
        return cls(networks, **{key: value for key, value in kwargs.items() if key != "networks"}, checkpointing=checkpointing)

    def train(self, mode: bool = True) -> Cascade:
        """Train mode everywhere but batch norm, whose statistics stay fixed (see the class docstring)."""
        super().train(mode)
        for module in self.modules():
            if _is_batch_norm(module):
                module.eval()
        return self

    def _run(self, stage: str, images: torch.Tensor) -> torch.Tensor:
        network = self.networks[stage]
        if not torch.is_grad_enabled():
            return network(images)
        if stage in self.frozen and not images.requires_grad:
            with torch.no_grad():
                return network(images)
        if self.checkpointing:
            return checkpoint(network, images, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), range_checked_upstream()))
        return network(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs: dict[str, torch.Tensor] = {}
        current = images
        for stage in NETWORK_STAGES:
            outputs[stage] = self._run(stage, current)
            current = outputs[stage].clamp(0, 1)  # what the next stage sees in Restorer
        outputs[PRIMARY] = outputs["edsr"] if self.unsharp is None else self.unsharp(current)
        return outputs

    def unsharp_mask(self) -> UnsharpMask | None:
        """The unsharp mask as ``Restorer`` should run it after fine-tuning (None when the cascade had none)."""
        if isinstance(self.unsharp, LearnableUnsharp):
            return self.unsharp.as_unsharp_mask()
        return self.unsharp


class CascadeLoss(nn.Module):
    """The final output's loss plus weighted auxiliary losses of each stage's output against its own target.

    Args:
        final: loss of ``predictions["final"]`` against ``targets["final"]`` (the sharp high-res patch).
        stages: auxiliary loss per stage; stage ``s``'s output is compared with ``targets[AUX_TARGETS[s]]``.
        weights: weight of each auxiliary term.

    Targets may be a tensor (the sharp high-res patch) when there are no auxiliary terms.
    ``last_terms`` keeps each term's latest unweighted value ("final", then the stages), for logging.
    """

    def __init__(self, final: nn.Module, stages: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        unknown = sorted(set(stages) - set(AUX_TARGETS))
        if unknown:
            raise ValueError(f"cascade loss: unknown stages {unknown}; expected some of {sorted(AUX_TARGETS)}")
        self.final = final
        self.stages = nn.ModuleDict(stages)
        self.weights = {stage: float(weights[stage]) for stage in stages}
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, predictions: Mapping[str, torch.Tensor], targets: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        targets = targets if isinstance(targets, Mapping) else {PRIMARY: targets}
        values = {PRIMARY: self.final(predictions[PRIMARY], targets[PRIMARY])}
        for stage, term in self.stages.items():
            target = AUX_TARGETS[stage]
            if target not in targets:
                raise ValueError(
                    f"cascade loss: the auxiliary term of {stage} needs the target {target!r}, but the dataset gives "
                    f"only {sorted(targets)}; give it, or set that stage's weight to 0"
                )
            values[stage] = term(predictions[stage], targets[target])
        self.last_terms = {name: value.detach() for name, value in values.items()}
        return values[PRIMARY] + sum(self.weights[stage] * values[stage] for stage in self.stages)


def build_cascade_loss(config: Mapping[str, Any] | None = None) -> CascadeLoss:
    """``CascadeLoss`` from ``{"final": loss config, "stages": loss config, "stage_weights": {stage: w}}``.

    Loss configs are ``helpers.losses.build_loss``'s; missing keys take ``DEFAULT_CASCADE_LOSS``'s values;
    stages of weight 0 get no auxiliary term.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CASCADE_LOSS))
    if unknown:
        raise ValueError(f"cascade loss config: unknown keys {unknown}; expected some of {sorted(DEFAULT_CASCADE_LOSS)}")
    config = {**DEFAULT_CASCADE_LOSS, **config}
    weights = {stage: weight for stage, weight in config["stage_weights"].items() if weight}
    return CascadeLoss(build_loss(config["final"]), {stage: build_loss(config["stages"]) for stage in weights}, weights)


def needs_checkpointing(cascade: Cascade, batch_size: int, patch: int, memory_bytes: float | None = None) -> bool:
    """Whether fine-tuning ``cascade`` on ``batch_size`` patches of ``patch`` x ``patch`` input pixels needs gradient
    checkpointing to fit in ``memory_bytes`` of GPU memory (default: this CUDA device's, else a 15 GB T4's).

    Estimated as ``helpers.profiling.estimate_training`` does: the activations one step keeps, counted on one
    small patch under 16-bit autocast on the CPU and scaled with the pixel count and batch, plus weights,
    gradients and Adam's moments, an allowance for cuDNN's workspaces and the CUDA context. Checkpointing
    recomputes each stage in the backward pass, about a third more compute: only worth it where the step
    would not fit (notebook 05's 8 x 128 patches: about 2.3 GiB of activations by this estimate, 3.5 GiB in all).
    """
    if memory_bytes is None:
        memory_bytes = (torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available()
                        else COLAB_GPUS["T4"].memory_gib * 2**30)
    side = min(patch, 48)  # at least the DnCNN's receptive field, a multiple of the UNet's 2**depth
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(1, 3, side, side, generator=generator)
    targets = {PRIMARY: torch.rand(1, 3, 2 * side, 2 * side, generator=generator)}
    targets.update({AUX_TARGETS[stage]: inputs.clone() for stage in ("dncnn", "unet")})
    probe = copy.deepcopy(cascade).cpu().train()
    probe.checkpointing = False
    loss = build_cascade_loss()

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = probe(inputs)
        return loss({name: output.float() for name, output in outputs.items()}, targets)

    activations, _ = saved_activation_bytes(step)
    trained = sum(parameter.numel() for parameter in probe.parameters() if parameter.requires_grad)
    estimate = TrainingEstimate(0.0, activations * batch_size * (patch / side) ** 2, trained * ADAM_BYTES_PER_PARAMETER, 1)
    return estimate.memory_bytes > memory_bytes


# ----------------------------------------------------------------------------- loading and exporting


def _stage_file(folder: Path, stage: str) -> Path:
    """A stage's weights in a folder: ``<stage>.pt`` (a weights folder) or ``<stage>/best.pt`` (notebooks 02-04)."""
    for candidate in (folder / f"{stage}.pt", folder / stage / "best.pt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: no {stage}.pt or {stage}/best.pt (the stage weights to start the cascade from)")


def load_cascade(init: str | os.PathLike | Mapping[str, str | os.PathLike], **options: Any) -> tuple[Cascade, dict[str, str]]:
    """The cascade to fine-tune and where each network came from ({stage: file}).

    ``init`` is a folder of stage weights (exported ``<stage>.pt`` files, or checkpoints as
    ``<stage>/best.pt``), a dict {stage: weights or checkpoint file}, or a cascade checkpoint (to fine-tune
    further; its networks are taken, and a learned unsharp amount is the starting amount). ``options`` go
    to ``Cascade``.
    """
    if isinstance(init, Mapping) or Path(init).is_dir():
        files = dict(init) if isinstance(init, Mapping) else {stage: _stage_file(Path(init), stage) for stage in NETWORK_STAGES}
        networks = {stage: load_model(file, expected_name=stage) for stage, file in files.items()}
        return Cascade(networks, **options), {stage: str(file) for stage, file in files.items()}
    path = Path(init)
    trained = _load_trained_cascade(path)
    unsharp = trained.unsharp_mask()
    if unsharp is not None and trained.unsharp_mode == "learnable":
        options.setdefault("unsharp_amount", unsharp.amount)
    return Cascade(dict(trained.networks), **options), {stage: f"{path} ({stage})" for stage in NETWORK_STAGES}


def _load_trained_cascade(path: Path) -> Cascade:
    """A cascade (float32, eval mode) rebuilt from a cascade training checkpoint."""
    state = load_checkpoint(path)
    if state["arch"].get("name") != Cascade.name:
        raise CheckpointError(
            f"{path}: holds a {state['arch'].get('name')!r} network, not a cascade; give a cascade checkpoint "
            "or a folder with dncnn.pt, unet.pt and edsr.pt"
        )
    model = Cascade.from_arch(state["arch"]["kwargs"])
    try:
        model.load_state_dict({key: value.float() for key, value in state["model"].items()})
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit its cascade: {str(error).splitlines()[0]}") from None
    return model.eval()


def export_cascade(checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``dncnn.pt``, ``unet.pt`` and ``edsr.pt`` (``export_weights``, float16) from a cascade checkpoint.

    Each file loads into ``Restorer`` like any stage weights and carries a ``cascade`` record: that it
    was fine-tuned end to end, from which files (``origin``), in which run and epoch, which stages were
    frozen, the loss and data, and the unsharp mask the cascade was trained with (``unsharp``: sigma,
    amount, threshold, or None), which ``Restorer.from_weights`` then uses.
    """
    path = Path(checkpoint_path)
    state = load_checkpoint(path)
    model = _load_trained_cascade(path)
    config, history = state.get("config", {}), state.get("history", {})
    unsharp = model.unsharp_mask()
    record = {
        "fine_tuned": "end to end in the cascade DnCNN -> UNet -> EDSR (helpers.cascade)",
        "checkpoint": str(path),
        "epoch": int(state.get("epoch", 0)),
        "origin": dict(config.get("data", {}).get("origin", {})),
        "frozen": list(model.frozen),
        "unsharp_mode": model.unsharp_mode,
        "unsharp": None if unsharp is None else {"sigma": unsharp.sigma, "amount": unsharp.amount, "threshold": unsharp.threshold},
        "loss": config.get("loss", {}),
        "data": config.get("data", {}),
        "val_psnr": list(history.get("val_psnr", [])),
        "input_psnr": list(history.get("input_psnr", [])),
    }
    out_dir = Path(out_dir)
    written = {}
    for stage, network in model.networks.items():
        origin = record["origin"].get(stage, "unknown")
        written[stage] = export_weights(network, out_dir / f"{stage}.pt", cascade=record, source=f"cascade fine-tuning of {origin}")
    return written
