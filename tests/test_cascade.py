"""End-to-end cascade fine-tuning: which networks get gradients, the auxiliary losses' targets, checkpointing,
exact resume through the shared trainer, and exports that Restorer loads unchanged.

Networks are tiny and the data is a handful of synthetic items made in the cascade's order (blur at high
resolution, downscale x2, noise), so every test runs in seconds on one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from torch.utils._python_dispatch import TorchDispatchMode

from bench.gpu_check import SyncCounter
from helpers.cascade import (
    AUX_TARGETS,
    Cascade,
    LearnableUnsharp,
    build_cascade_loss,
    export_cascade,
    load_cascade,
    needs_checkpointing,
)
from helpers.checks import range_checked_upstream
from helpers.checkpoint import CheckpointError, export_weights, load_checkpoint
from helpers.commands import main
from helpers.data import build_dataset, pairs_for
from helpers.degrade import add_gaussian_noise, downscale, motion_blur
from helpers.models import EDSR, BicubicWithMatrixBackward, DnCNN, UNet, UnsharpMask
from helpers.pipeline import DEFAULT_WEIGHTS_DIR, Restorer
from helpers.profiling import saved_activation_bytes
from helpers.training import TIMING_KEYS, fit
from helpers.training.reproducibility import deterministic_algorithms

from conftest import without_identity_start

LOW = 24  # low-res patch side: the tiny DnCNN needs 11, the tiny UNet a multiple of 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_networks(seed: int = 0, identity_start: bool = False) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    networks = {"dncnn": DnCNN(depth=5, channels=8), "unet": UNet(base_channels=8, depth=2), "edsr": EDSR(num_blocks=1, channels=8)}
    return networks if identity_start else {name: without_identity_start(network) for name, network in networks.items()}


class TinyCascadeData(Dataset):
    """Items as a cascade dataset gives them, from smooth random images: blur at high res, downscale x2, noise."""

    def __init__(self, count: int, seed: int = 0, sigma: float = 15.0) -> None:
        self.count, self.seed, self.sigma, self.epoch = count, seed, sigma, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        coarse = rng.random((LOW // 4, LOW // 4, 3)).astype(np.float32)
        sharp = np.kron(coarse, np.ones((8, 8, 1), np.float32))  # blocks: edges for the blur to soften
        blurry_lr = downscale(motion_blur(sharp, rng, max_shift=4), 2)
        noisy = add_gaussian_noise(blurry_lr, self.sigma, rng)
        tensor = lambda image: torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # noqa: E731
        return tensor(noisy), {"final": tensor(sharp), "blurry_lr": tensor(blurry_lr), "sharp_lr": tensor(downscale(sharp, 2))}


def batch(count: int = 2, seed: int = 0):
    items = [TinyCascadeData(count, seed)[index] for index in range(count)]
    inputs = torch.stack([item[0] for item in items])
    targets = {key: torch.stack([item[1][key] for item in items]) for key in items[0][1]}
    return inputs, targets


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("freeze", [(), ("dncnn",), ("unet",), ("dncnn", "edsr")], ids=lambda f: "+".join(f) or "none")
def test_gradients_reach_exactly_the_unfrozen_networks(freeze):
    cascade = Cascade(tiny_networks(), unsharp="learnable", freeze=freeze)
    inputs, targets = batch()
    build_cascade_loss()(cascade(inputs), targets).backward()

    for stage, network in cascade.networks.items():
        gradients = [parameter.grad for parameter in network.parameters()]
        if stage in freeze:
            assert all(gradient is None for gradient in gradients), stage
        else:
            assert all(gradient is not None and gradient.abs().sum() > 0 for gradient in gradients), stage
    assert cascade.unsharp.logit.grad is not None and cascade.unsharp.logit.grad != 0


def test_frozen_networks_and_batch_norm_statistics_do_not_move_in_training():
    cascade = Cascade(tiny_networks(), freeze=("unet",))
    before = {key: value.clone() for key, value in cascade.state_dict().items()}
    optimizer = torch.optim.Adam(cascade.parameters(), lr=1e-2)
    cascade.train()
    for seed in range(2):
        inputs, targets = batch(seed=seed)
        optimizer.zero_grad()
        build_cascade_loss()(cascade(inputs), targets).backward()
        optimizer.step()
    after = cascade.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert not any(key.startswith("networks.unet.") for key in changed)
    assert not any("running_" in key or "num_batches" in key for key in changed)  # DnCNN's batch-norm statistics
    assert any(key.startswith("networks.dncnn.") for key in changed) and any(key.startswith("networks.edsr.") for key in changed)


def test_everything_frozen_is_refused():
    with pytest.raises(ValueError, match="every stage is frozen"):
        Cascade(tiny_networks(), freeze=("dncnn", "unet", "edsr"))


def test_checkpointing_gives_the_same_gradients_and_keeps_less():
    inputs, targets = batch()
    gradients, kept = [], []
    for checkpointing in (False, True):
        cascade = Cascade(tiny_networks(seed=3), unsharp="learnable", checkpointing=checkpointing)
        saved, loss = saved_activation_bytes(lambda: build_cascade_loss()(cascade(inputs), targets))
        loss.backward()
        gradients.append({name: parameter.grad.clone() for name, parameter in cascade.named_parameters()})
        kept.append(saved)
    assert gradients[0].keys() == gradients[1].keys()
    for name, expected in gradients[0].items():
        assert torch.equal(gradients[1][name], expected), name  # recomputation is bit-exact on the CPU
    assert kept[1] < 0.5 * kept[0]  # the networks' activations are recomputed, not kept


def test_recomputed_stages_do_not_check_their_input_range_again():
    """The forward pass checked (or, in the trainer, left out) each stage's input range; with checkpointing the
    backward pass's recomputation ran the check again: a read from the device per stage and step on a GPU."""
    cascade = Cascade(tiny_networks(), checkpointing=True)
    inputs, targets = batch()
    with range_checked_upstream():  # as the trainer runs the forward pass
        loss = build_cascade_loss()(cascade(inputs), targets)
    with SyncCounter("cpu") as syncs:
        loss.backward()
    assert cascade.networks["dncnn"].body[0].weight.grad is not None
    assert [location for location in syncs.counts if "check_image_batch" in location] == []


class Operations(TorchDispatchMode):
    """The names of the aten operations run inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_deterministic_runs_give_edsrs_bicubic_skip_a_gradient_without_atomic_adds(checkpointing):
    """The CUDA backward of bicubic upsampling adds with atomics in no fixed order, so --deterministic cascade runs
    were not reproducible (torch only warned). Under deterministic algorithms it is two matrix products instead, the
    same gradient to float rounding, and the forward pass is unchanged."""
    inputs, targets = batch()
    results = []
    for deterministic in (False, True):
        cascade = Cascade(tiny_networks(seed=1), checkpointing=checkpointing)
        with deterministic_algorithms(deterministic), Operations() as operations:
            outputs = cascade(inputs)
            build_cascade_loss()(outputs, targets).backward()
        gradients = {name: parameter.grad for name, parameter in cascade.named_parameters() if "edsr" not in name}
        results.append((outputs["final"].detach(), gradients, operations.names))
    (plain_output, plain_gradients, plain_operations), (output, gradients, operations) = results
    assert "upsample_bicubic2d_backward.default" in plain_operations
    assert "upsample_bicubic2d_backward.default" not in operations and "upsample_bicubic2d.default" in operations
    assert torch.equal(output, plain_output)
    for name, expected in plain_gradients.items():  # the UNet and DnCNN learn through EDSR's skip
        torch.testing.assert_close(gradients[name], expected, rtol=1e-4, atol=1e-6, msg=name)


def test_bicubic_matrix_backward_is_the_adjoint_of_interpolate():
    images = torch.rand(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    options = {"scale_factor": 2, "mode": "bicubic", "align_corners": False}
    assert torch.autograd.gradcheck(lambda x: BicubicWithMatrixBackward.apply(x, options), (images,))
    expected = torch.autograd.grad(nn.functional.interpolate(images, **options).sin().sum(), images)[0]
    actual = torch.autograd.grad(BicubicWithMatrixBackward.apply(images, options).sin().sum(), images)[0]
    torch.testing.assert_close(actual, expected)


def test_checkpointing_is_chosen_by_the_memory_a_step_needs():
    """Notebook 05's 8 x 128 patches with the bundled networks keep a few GiB of activations: a 15 GB T4 needs no
    checkpointing (a third more compute); 64 x 256 patches need about 16 times as much."""
    cascade, _ = load_cascade(DEFAULT_WEIGHTS_DIR)
    t4 = 15 * 2**30
    assert not needs_checkpointing(cascade, 8, 128, memory_bytes=t4)
    assert needs_checkpointing(cascade, 64, 256, memory_bytes=t4)
    assert needs_checkpointing(cascade, 8, 128, memory_bytes=2 * 2**30)
    assert not cascade.checkpointing  # the estimate ran on a copy


# ----------------------------------------------------------------------------- losses


def test_each_auxiliary_term_uses_its_own_target():
    """Known answer: every prediction is 0 and each target a different constant, so each L1 term is that constant."""
    low, high = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16)
    predictions = {"dncnn": low, "unet": low, "edsr": high, "final": high + 0.05}
    targets = {"blurry_lr": low + 0.1, "sharp_lr": low + 0.2, "final": high + 0.4}
    loss = build_cascade_loss({"stage_weights": {"dncnn": 0.5, "unet": 0.25, "edsr": 2.0}})
    total = loss(predictions, targets)

    terms = {name: round(float(value), 6) for name, value in loss.last_terms.items()}
    assert terms == {"final": 0.35, "dncnn": 0.1, "unet": 0.2, "edsr": 0.4}
    assert float(total) == pytest.approx(0.35 + 0.5 * 0.1 + 0.25 * 0.2 + 2.0 * 0.4)
    assert AUX_TARGETS == {"dncnn": "blurry_lr", "unet": "sharp_lr", "edsr": "final"}


def test_stage_outputs_on_a_flat_image_with_identity_networks():
    """Untrained networks are the identity (DnCNN, UNet) and bicubic (EDSR): on a flat grey image every
    stage returns it, and the unsharp mask has no detail to add, so each loss term is |0.4 - its target|."""
    cascade = Cascade(tiny_networks(identity_start=True))
    flat = torch.full((1, 3, LOW, LOW), 0.4)
    outputs = cascade(flat)
    assert set(outputs) == {"dncnn", "unet", "edsr", "final"}
    for stage, size in (("dncnn", LOW), ("unet", LOW), ("edsr", 2 * LOW), ("final", 2 * LOW)):
        torch.testing.assert_close(outputs[stage], torch.full((1, 3, size, size), 0.4), atol=1e-5, rtol=0)
    targets = {"blurry_lr": torch.full_like(flat, 0.5), "sharp_lr": torch.full_like(flat, 0.7), "final": torch.full((1, 3, 2 * LOW, 2 * LOW), 0.1)}
    loss = build_cascade_loss({"stage_weights": {"dncnn": 1.0, "unet": 1.0, "edsr": 1.0}})
    assert float(loss(outputs, targets).detach()) == pytest.approx(0.3 + 0.1 + 0.3 + 0.3, abs=1e-4)


def test_missing_auxiliary_target_is_named_and_a_zero_weight_needs_none():
    inputs, targets = batch()
    outputs = Cascade(tiny_networks())(inputs)
    with pytest.raises(ValueError, match="unet needs the target 'sharp_lr'"):
        build_cascade_loss()(outputs, {"final": targets["final"], "blurry_lr": targets["blurry_lr"]})
    final_only = build_cascade_loss({"stage_weights": {"dncnn": 0, "unet": 0, "edsr": 0}})
    expected = (outputs["final"] - targets["final"]).abs().mean()
    assert float(final_only(outputs, targets["final"]).detach()) == pytest.approx(float(expected.detach()))


def test_learnable_unsharp_is_bounded_and_starts_at_the_fixed_filter():
    image = torch.rand(1, 3, 20, 20)
    learnable = LearnableUnsharp(amount=0.5, max_amount=2.0)
    torch.testing.assert_close(learnable(image), UnsharpMask(amount=0.5)(image))
    with torch.no_grad():
        learnable.logit.fill_(1e4)
    assert learnable.as_unsharp_mask().amount == pytest.approx(2.0)
    with torch.no_grad():
        learnable.logit.fill_(-1e4)
    assert learnable.as_unsharp_mask().amount == pytest.approx(0.0)


# ----------------------------------------------------------------------------- training, resume, export


def weights_folder(folder: Path, seed: int = 0) -> Path:
    for name, network in tiny_networks(seed).items():
        export_weights(network, folder / f"{name}.pt", half=False)
    return folder


QUICK = {"batch_size": 2, "steps_per_epoch": 3, "early_stop_patience": None, "lr": 1e-3, "seed": 0}


def run_cascade(folder: Path, init: Path, epochs: int, resume: bool = False, **options) -> tuple[Cascade, dict]:
    cascade, origin = load_cascade(init, **options)
    config = {**QUICK, "epochs": epochs, "data": {"origin": origin}, "loss": {}}
    history = fit(cascade, TinyCascadeData(6), TinyCascadeData(2, seed=1), build_cascade_loss(), config=config,
                  checkpoint_dir=folder, resume=resume)
    return cascade, history


def test_resume_reproduces_an_uninterrupted_cascade_run(tmp_path):
    init = weights_folder(tmp_path / "init")
    options = {"unsharp": "learnable", "freeze": ["unet"], "checkpointing": True}
    straight, straight_history = run_cascade(tmp_path / "straight", init, 2, **options)
    run_cascade(tmp_path / "split", init, 1, **options)
    resumed, resumed_history = run_cascade(tmp_path / "split", init, 2, resume=True, **options)

    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
    without_time = lambda history: {key: values for key, values in history.items() if key not in TIMING_KEYS}  # noqa: E731
    np.testing.assert_equal(without_time(resumed_history), without_time(straight_history))  # NaN equals NaN here
    assert straight_history["val_psnr"][-1] != straight_history["input_psnr"][-1]  # metrics on the final 2x output


def test_exports_load_into_restorer_unchanged(tmp_path):
    init = weights_folder(tmp_path / "init")
    cascade, _ = run_cascade(tmp_path / "run", init, 1, unsharp="learnable")
    written = export_cascade(tmp_path / "run" / "best.pt", tmp_path / "weights")
    assert sorted(path.name for path in written.values()) == ["dncnn.pt", "edsr.pt", "unet.pt"]

    restorer = Restorer.from_weights(tmp_path / "weights", device="cpu", fp32=True)
    learned = float(load_checkpoint(tmp_path / "run" / "best.pt")["model"]["unsharp.logit"].sigmoid() * 2.0)
    assert restorer.models["unsharp"].amount == pytest.approx(learned) and learned != pytest.approx(0.5, abs=1e-6)
    for stage in ("dncnn", "unet", "edsr"):
        record = load_checkpoint(written[stage])["cascade"]
        assert record["origin"] == {name: str(init / f"{name}.pt") for name in ("dncnn", "unet", "edsr")}
        assert record["fine_tuned"].startswith("end to end") and record["epoch"] == 1 and record["unsharp_mode"] == "learnable"

    # The restorer's output is the fine-tuned cascade's own (float16 weights as exported).
    exported = {stage: network.half().float() for stage, network in cascade.networks.items()}
    reference = Cascade(exported, unsharp="fixed", unsharp_amount=learned).eval()
    image = TinyCascadeData(1)[0][0][None]
    with torch.no_grad():
        expected = reference(image)["final"]
    torch.testing.assert_close(restorer.restore_tensor(image), expected, atol=2e-4, rtol=0)
    # Stages still switch off as before: the exported files are ordinary stage weights.
    assert Restorer.from_weights(tmp_path / "weights", stages=("dncnn", "unet"), scale=1, device="cpu").restore_tensor(image).shape == image.shape


def test_continue_from_a_cascade_checkpoint_and_refuse_a_stage_checkpoint(tmp_path):
    init = weights_folder(tmp_path / "init")
    first, _ = run_cascade(tmp_path / "run", init, 1, unsharp="learnable")
    again, origin = load_cascade(tmp_path / "run" / "best.pt", unsharp="learnable", freeze=["dncnn"])
    for key, value in first.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, msg=key)
    assert not any(p.requires_grad for p in again.networks["dncnn"].parameters())
    assert all(p.requires_grad for p in again.networks["unet"].parameters())  # was frozen in no run, trains now
    with pytest.raises(CheckpointError, match="holds a 'dncnn' network, not a cascade"):
        load_cascade(init / "dncnn.pt")
    with pytest.raises(FileNotFoundError, match="no unet.pt or unet/best.pt"):
        (init / "unet.pt").unlink()
        load_cascade(init)


# ----------------------------------------------------------------------------- data and command line


def test_cascade_datasets_give_the_targets_the_loss_expects(sample_cache):
    pairs = pairs_for("sample", "train")[:2]
    dataset = build_dataset("cascade", pairs, patch_size=LOW, sigma=25.0, seed=1)
    noisy, targets = dataset[0]
    assert noisy.shape == (3, LOW, LOW) and set(targets) == {*AUX_TARGETS.values()}
    assert targets["final"].shape == (3, 2 * LOW, 2 * LOW)
    # The input is the blurry target plus noise of about sigma 25 (8-bit levels); the sharp low-res target
    # is the 2x2 average of the high-res one.
    residual = (noisy - targets["blurry_lr"]) * 255
    assert 20 < float(residual.std()) < 30 and torch.allclose(noisy * 255, (noisy * 255).round(), atol=1e-3)
    expected_low = targets["final"].reshape(3, LOW, 2, LOW, 2).mean(dim=(2, 4))
    torch.testing.assert_close(targets["sharp_lr"], expected_low)
    again = build_dataset("cascade", pairs, patch_size=LOW, sigma=25.0, seed=1)[0]
    assert torch.equal(again[0], noisy)  # seeded per item


def test_photo_cascade_dataset_gives_the_targets_as_a_dict(tmp_path):
    import skimage.data

    from helpers.data import PhotoLibrary, build_photo_dataset, parse_photo_folders
    from helpers.io import write_image

    for index, name in enumerate(("astronaut", "coffee")):
        write_image(tmp_path / "photos" / f"{index}.png", getattr(skimage.data, name)()[:200, :200])
    library = PhotoLibrary(parse_photo_folders(str(tmp_path / "photos")), "train", val_fraction=0)
    noisy, targets = build_photo_dataset("cascade", library, patch_size=LOW, length=2)[1]
    assert noisy.shape == (3, LOW, LOW) and set(targets) == {*AUX_TARGETS.values()}
    assert targets["final"].shape == (3, 2 * LOW, 2 * LOW) and targets["sharp_lr"].shape == targets["blurry_lr"].shape == noisy.shape


def cli_args(init: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "cascade", "--init", str(init), "--data", "sample", "--out", str(out), "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "1", "--patch", "40", "--val-patch", "40", "--device", "cpu", *extra]


def test_train_cascade_command_fine_tunes_and_exports(sample_cache, tmp_path, capsys):
    init = weights_folder(tmp_path / "init")
    out = tmp_path / "run"
    assert main(cli_args(init, out, "--freeze", "dncnn", "--aux-weights", "unet=0.2", "--checkpointing")) == 0
    state = load_checkpoint(out / "last.pt")
    assert state["arch"]["kwargs"]["freeze"] == ["dncnn"] and state["config"]["loss"]["stage_weights"] == {"dncnn": 0.5, "unet": 0.2, "edsr": 0.5}
    assert state["config"]["data"]["origin"]["unet"] == str(init / "unet.pt") and state["global_step"] == 2
    assert set(Restorer.from_weights(out / "weights", device="cpu").models) == {"dncnn", "unet", "edsr", "unsharp"}
    frozen, exported = (load_checkpoint(folder / "dncnn.pt")["model"] for folder in (init, out / "weights"))
    assert all(torch.equal(value.half(), exported[key]) for key, value in frozen.items())  # unchanged, float16 as exported
    trained, exported = (load_checkpoint(folder / "unet.pt")["model"] for folder in (init, out / "weights"))
    assert not all(torch.equal(value.half(), exported[key]) for key, value in trained.items())
    assert "exported the best epoch" in capsys.readouterr().out


def test_train_cascade_deterministic_resumes_bit_exact(sample_cache, tmp_path):
    """--deterministic reaches the cascade's run (and its EDSR skip); killed after epoch 1 and resumed, the run ends
    where an uninterrupted one does, bit for bit, on the CPU."""
    init = weights_folder(tmp_path / "init")
    two_epochs = ("--epochs", "2", "--deterministic", "--checkpointing")
    assert main(cli_args(init, tmp_path / "straight", *two_epochs)) == 0
    assert main(cli_args(init, tmp_path / "split", "--deterministic", "--checkpointing")) == 0  # stops after epoch 1
    assert main(cli_args(init, tmp_path / "split", *two_epochs, "--resume")) == 0
    straight, resumed = (load_checkpoint(tmp_path / run / "last.pt") for run in ("straight", "split"))
    assert straight["config"]["deterministic"] is True and resumed["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for index, state in straight["optimizer"]["state"].items():
        assert all(torch.equal(value, resumed["optimizer"]["state"][index][name]) for name, value in state.items())


def test_train_cascade_command_reports_bad_init_in_one_line(sample_cache, tmp_path, capsys):
    assert main(cli_args(tmp_path / "nowhere", tmp_path / "run")) == 2  # a set-up error, as for every other train command
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "nowhere" in error[0]
    with pytest.raises(SystemExit):
        main(cli_args(tmp_path, tmp_path / "run", "--freeze", "edsr,sharpen"))


def test_torchrun_two_gloo_processes_fine_tune_the_cascade(sample_cache, tmp_path):
    import os
    import subprocess
    import sys

    init = weights_folder(tmp_path / "init")
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "helpers",
               *cli_args(init, out, "--freeze", "dncnn", "--checkpointing")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 1/1:") == 1 and result.stdout.count("exported the best epoch") == 1  # rank 0 only
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "weights"]
    assert load_checkpoint(out / "last.pt")["global_step"] == 2
