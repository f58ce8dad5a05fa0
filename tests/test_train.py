"""Tests for the trainer: learning, exact resume, crash safety, NaN handling, bad checkpoints, DDP, history.

Networks are tiny (DnCNN depth 5 x 16, UNet 8 x depth 2, EDSR 2 blocks x 16) and patches small, on
the embedded sample set built once into a temporary cache. Torch runs one thread per process: on a
shared two-core machine OpenMP threads spinning against other processes made steps many times slower.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from torch.utils.data import DataLoader

from bench.gpu_check import SyncCounter
from helpers.checkpoint import CheckpointError, export_weights, load_checkpoint, load_model
from helpers.commands import build_parser, main
from helpers.data import build_dataset, resolve_source
from helpers.losses import build_loss
from helpers.models import EDSR, DnCNN, UNet
from helpers import recipes
from helpers.commands.train import config_from_args, train_command
from helpers.training import HISTORY_KEYS, TIMING_KEYS, DistributedInfo, EpochSampler, TrainingDiverged, fit, validate
from helpers.training.config import config_from
from helpers.training.trainer import _Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "dncnn": lambda: DnCNN(depth=5, channels=16),
    "unet": lambda: UNet(base_channels=8, depth=2),
    "edsr": lambda: EDSR(num_blocks=2, channels=16),
}
LOSSES = {"dncnn": {"weights": {"mse": 1.0}}, "unet": {"weights": {"mse": 0.0, "l1": 1.0}}, "edsr": {"weights": {"mse": 0.0, "l1": 1.0}}}
QUICK = {"batch_size": 8, "steps_per_epoch": 4, "early_stop_patience": None}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample set and frame caches, built once for this module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def sample_pairs(cache_root: Path) -> dict[str, list]:
    source = resolve_source("sample", cache_root=cache_root)
    return {"train": source.pairs("train"), "val": source.pairs("val")}


def make_datasets(stage: str, pairs: dict[str, list], cache_root: Path, patch: int = 32, val_patch: int = 48):
    options = {"sigma": 25.0} if stage == "dncnn" else {}
    train = build_dataset(stage, pairs["train"], patch_size=patch, samples_per_frame=50, cache_dir=cache_root / "frames", **options)
    val = build_dataset(stage, pairs["val"], patch_size=val_patch, augment=False, samples_per_frame=2, cache_dir=cache_root / "frames", **options)
    return train, val


def subprocess_env(cache_root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "IMAGE_REPAIR_CACHE": str(cache_root),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }


def cli_train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "dncnn", "--data", "sample", "--out", str(out), "--batch-size", "2", "--patch", "40", "--val-patch", "48", *extra]


# ----------------------------------------------------------------------------- learning and history


@pytest.mark.parametrize("stage", ["dncnn", "unet", "edsr"])
def test_short_run_lowers_validation_loss(stage, sample_pairs, cache_root, tmp_path):
    torch.manual_seed(0)
    model = TINY[stage]()
    train, val = make_datasets(stage, sample_pairs, cache_root)
    loss = build_loss(LOSSES[stage])
    before = validate(model, DataLoader(val), loss, torch.device("cpu"))
    history = fit(model, train, val, loss, checkpoint_dir=tmp_path, epochs=2, lr=3e-3, batch_size=8, steps_per_epoch=30, early_stop_patience=None)

    # Untrained networks are the identity (DnCNN, UNet) or bicubic (EDSR), i.e. the input's own quality:
    # training must lower the loss and beat the input. Denoising gains decibels within seconds;
    # deblurring and super-resolution gain a little in these 60 steps of a tiny network.
    assert before["val_psnr"] == pytest.approx(history["input_psnr"][0], abs=0.05)
    assert history["val_loss"][-1] < before["val_loss"]
    assert history["val_psnr"][-1] > history["input_psnr"][-1] + {"dncnn": 1.0, "unet": 0.02, "edsr": 0.2}[stage]


def test_history_and_metrics_match_independent_references(sample_pairs, cache_root, tmp_path):
    torch.manual_seed(0)
    train, val = make_datasets("edsr", sample_pairs, cache_root)
    history = fit(TINY["edsr"](), train, val, build_loss(LOSSES["edsr"]), checkpoint_dir=tmp_path, epochs=2, lr=3e-3, **QUICK)

    assert set(history) == set(HISTORY_KEYS)
    assert all(len(values) == 2 for values in history.values())
    assert history["epoch"] == [1, 2]
    np.testing.assert_equal(load_checkpoint(tmp_path / "last.pt")["history"], history)  # NaN-aware: no cascade_psnr here
    # The input baseline is the bicubic upscale (OpenCV here; borders differ slightly from torch's).
    bicubic, best_model = [], load_model(tmp_path / "last.pt")
    predicted_psnr, predicted_ssim = [], []
    for index in range(len(val)):
        low, high = val[index]
        target = high.permute(1, 2, 0).numpy().astype(np.float64)
        upscaled = cv2.resize(low.permute(1, 2, 0).numpy(), target.shape[1::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1)
        bicubic.append(peak_signal_noise_ratio(target, upscaled.astype(np.float64), data_range=1.0))
        with torch.no_grad():
            prediction = best_model(low[None])[0].clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)
        predicted_psnr.append(peak_signal_noise_ratio(target, prediction, data_range=1.0))
        predicted_ssim.append(
            structural_similarity(target, prediction, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        )
    assert history["input_psnr"][0] == pytest.approx(np.mean(bicubic), abs=0.15)
    assert history["input_psnr"][0] == history["input_psnr"][1]
    assert history["val_psnr"][-1] == pytest.approx(np.mean(predicted_psnr), abs=1e-3)
    assert history["val_ssim"][-1] == pytest.approx(np.mean(predicted_ssim), abs=1e-3)
    assert all(s == 0 for s in history["skipped_steps"]) and all(s > 0 for s in history["seconds"])


def test_validation_is_batched_and_keeps_its_workers(sample_pairs, cache_root, tmp_path):
    train, crops = make_datasets("dncnn", sample_pairs, cache_root)
    frames = build_dataset("dncnn", sample_pairs["val"], patch_size=None, augment=False, sigma=25.0, cache_dir=cache_root / "frames")
    config = config_from({"batch_size": 8, "num_workers": 1}, {})
    loss, cpu = build_loss(LOSSES["dncnn"]), torch.device("cpu")
    trainer = _Trainer(TINY["dncnn"](), train, crops, loss, config, tmp_path, cpu, DistributedInfo())
    assert trainer.val_loader.batch_size == 8 and trainer.val_loader.persistent_workers  # was batch 1, new workers each epoch
    first = validate(trainer.raw_model, trainer.val_loader, loss, cpu)
    workers = trainer.val_loader._iterator
    assert validate(trainer.raw_model, trainer.val_loader, loss, cpu) == first and trainer.val_loader._iterator is workers
    one_by_one = validate(trainer.raw_model, DataLoader(crops, batch_size=1), loss, cpu)
    assert first == pytest.approx(one_by_one, rel=1e-5)  # per-image averages, whatever the batch
    whole = _Trainer(TINY["dncnn"](), train, frames, loss, config, tmp_path, cpu, DistributedInfo())
    assert whole.val_loader.batch_size == 1  # whole frames may differ in size: not batched


def test_best_checkpoint_is_written_before_last(sample_pairs, cache_root, tmp_path, monkeypatch):
    """A VM killed between the two writes must not resume without the best epoch's checkpoint (the Colab
    session test found a resumed run whose best epoch came before the kill ending with no best.pt)."""
    import helpers.training.trainer as train_module

    written = []
    save = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", lambda path, state: (written.append(Path(path).name), save(path, state)))
    train, val = make_datasets("dncnn", sample_pairs, cache_root)
    fit(TINY["dncnn"](), train, val, build_loss(LOSSES["dncnn"]), checkpoint_dir=tmp_path, epochs=1, lr=1e-3, **QUICK)
    assert written == ["best.pt", "last.pt"]


def test_epoch_sampler_is_seeded_and_splits_ranks():
    single = EpochSampler(10, 24, seed=3)
    single.set_epoch(1)
    order = list(single)
    assert len(order) == 24 and sorted(order[:10]) == list(range(10))  # whole permutations chained
    assert list(single) == order
    single.set_epoch(2)
    assert list(single) != order
    ranks = [EpochSampler(10, 12, seed=3, rank=rank, world_size=2) for rank in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(1)
    assert list(ranks[0]) == order[0::2] and list(ranks[1]) == order[1::2]


# ----------------------------------------------------------------------------- resume and crash safety


def test_resume_reproduces_an_uninterrupted_run(sample_pairs, cache_root, tmp_path):
    def run(folder: Path, epochs: int, resume: bool) -> tuple[nn.Module, dict]:
        torch.manual_seed(0)
        model = TINY["dncnn"]()  # batch norm: running statistics must resume too
        train, val = make_datasets("dncnn", sample_pairs, cache_root)
        history = fit(model, train, val, config={"loss": LOSSES["dncnn"], "lr": 1e-3, **QUICK, "epochs": epochs},
                      checkpoint_dir=folder, resume=resume)
        return model, history

    straight, straight_history = run(tmp_path / "straight", 2, resume=False)
    run(tmp_path / "split", 1, resume=False)
    resumed, resumed_history = run(tmp_path / "split", 2, resume=True)

    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(expected.float(), actual.float(), rtol=0, atol=0), name
    without_time = lambda history: {key: values for key, values in history.items() if key not in TIMING_KEYS}  # noqa: E731
    np.testing.assert_equal(without_time(resumed_history), without_time(straight_history))  # NaN (no cascade_psnr) equals NaN
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 2


def test_sigkill_mid_epoch_then_resume_finishes(sample_pairs, cache_root, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "helpers", *cli_train_args(out, "--epochs", "3", "--steps-per-epoch", "8")]
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(cache_root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    finished_early = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not finished_early, process.stderr.read().decode()
    assert load_checkpoint(out / "last.pt")["epoch"] in (1, 2)

    result = subprocess.run(command + ["--resume"], cwd=REPO, env=subprocess_env(cache_root), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 3 and state["history"]["epoch"] == [1, 2, 3]
    assert load_model(out / "last.pt", expected_name="dncnn")
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]  # no temp files left


def test_failed_checkpoint_write_keeps_the_previous_file(sample_pairs, cache_root, tmp_path, monkeypatch):
    train, val = make_datasets("edsr", sample_pairs, cache_root)
    config = {"loss": LOSSES["edsr"], **QUICK}
    fit(TINY["edsr"](), train, val, config=config, checkpoint_dir=tmp_path, epochs=1)
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def save_half_then_die(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        with open(file, "r+b") as handle:
            handle.truncate(os.path.getsize(file) // 2)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(OSError, match="simulated"):
        fit(TINY["edsr"](), train, val, config=config, checkpoint_dir=tmp_path, epochs=2, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


class NanAfter(nn.Module):
    """L1 for the first ``good_steps`` training calls, NaN afterwards (validation calls stay finite)."""

    def __init__(self, good_steps: int) -> None:
        super().__init__()
        self.good_steps, self.training_calls = good_steps, 0

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = (prediction - target).abs().mean()
        if torch.is_grad_enabled():
            self.training_calls += 1
            if self.training_calls > self.good_steps:
                return loss * math.nan
        return loss


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(sample_pairs, cache_root, tmp_path):
    train, val = make_datasets("edsr", sample_pairs, cache_root)
    model = TINY["edsr"]()
    with pytest.raises(TrainingDiverged, match=r"non-finite for 3 consecutive steps.*last\.pt"):
        fit(model, train, val, NanAfter(good_steps=4), checkpoint_dir=tmp_path, epochs=3, nan_patience=3, **QUICK)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and state["global_step"] == 4
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    for name, value in model.state_dict().items():  # the NaN steps were skipped, not applied
        assert torch.equal(value, state["model"][name]), name


def make_trainer(stage: str, sample_pairs, cache_root: Path, folder: Path, **config):
    """The trainer ``fit`` builds, on the CPU and in one process, for tests of its parts."""

    train, val = make_datasets(stage, sample_pairs, cache_root)
    config = config_from({"loss": LOSSES[stage], **QUICK}, config)
    return _Trainer(TINY[stage](), train, val, build_loss(LOSSES[stage]), config, folder, torch.device("cpu"), DistributedInfo())


def test_resume_loads_training_state_into_host_memory(dncnn_checkpoint, sample_pairs, cache_root, tmp_path):
    """Loading onto a GPU broke resume (the NumPy RNG state cannot leave host memory) and left Adam's step
    counters there (a synchronisation per parameter per step); "meta" stands in for such a device here."""
    fresh = make_trainer("dncnn", sample_pairs, cache_root, tmp_path / "fresh", steps_per_epoch=1)
    fresh.train_epoch()
    trainer = make_trainer("dncnn", sample_pairs, cache_root, tmp_path, steps_per_epoch=1)  # the stored run's options
    trainer.device = torch.device("meta")
    trainer.resume(dncnn_checkpoint)

    assert trainer.epoch == 1 and trainer.global_step == 1
    step_devices = lambda trainer: {state["step"].device for state in trainer.optimizer.state.values()}  # noqa: E731
    assert step_devices(trainer) == step_devices(fresh) == {torch.device("cpu")}  # where a fresh run keeps them
    stored = load_checkpoint(dncnn_checkpoint)["model"]
    assert all(torch.equal(value, stored[name]) for name, value in trainer.raw_model.state_dict().items())


def test_resume_with_float16_amp_from_a_run_without_it(sample_pairs, cache_root, tmp_path, monkeypatch, capsys):
    """A run saved on the CPU (no loss scaler: its state is {}) resumes where float16 AMP is on, as on a GPU."""
    import helpers.training.trainer as train_module

    train, val = make_datasets("dncnn", sample_pairs, cache_root)
    config = {"loss": LOSSES["dncnn"], **QUICK, "steps_per_epoch": 2}
    fit(TINY["dncnn"](), train, val, config=config, checkpoint_dir=tmp_path, epochs=1)
    assert load_checkpoint(tmp_path / "last.pt")["scaler"] == {}

    monkeypatch.setattr(train_module, "amp_settings", lambda config, device: (True, torch.float16))  # as on CUDA
    history = fit(TINY["dncnn"](), train, val, config=config, checkpoint_dir=tmp_path, epochs=2, resume=True)
    assert history["epoch"] == [1, 2] and math.isfinite(history["val_loss"][-1])
    assert "no float16 loss-scaler state" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "last.pt")["scaler"]["scale"] > 0  # the resumed run saved its scaler


def test_a_skipped_step_leaves_the_batchnorm_statistics_as_they_were(sample_pairs, cache_root, tmp_path):
    """One overflowing forward pass (float16 on a GPU) skips its step and must not poison BatchNorm's running stats."""
    train, val = make_datasets("dncnn", sample_pairs, cache_root)
    model, buffers_at_step_start = TINY["dncnn"](), []

    def record_buffers(module: nn.Module, inputs: tuple) -> None:
        if module.training:
            buffers_at_step_start.append({name: value.clone() for name, value in model.named_buffers()})

    def overflow_on_second_step(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return output * math.inf if module.training and len(buffers_at_step_start) == 2 else None

    model.body[0].register_forward_pre_hook(record_buffers)
    model.body[0].register_forward_hook(overflow_on_second_step)
    history = fit(model, train, val, config={"loss": LOSSES["dncnn"], **QUICK}, checkpoint_dir=tmp_path, epochs=1)

    assert history["skipped_steps"] == [1]
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())
    first, second, third = buffers_at_step_start[:3]
    assert not torch.equal(first["body.3.running_mean"], second["body.3.running_mean"])  # a normal step moves them
    assert all(torch.equal(third[name], value) for name, value in second.items())  # the skipped one put them back


class DeviceReads:
    """Counts tensor-to-Python reads (``item``, ``float()``, ``bool()``, ``tolist``...): each is a GPU synchronisation
    on a device tensor. Not counted: the edge checks of each batch in host memory and Adam's step counters, which
    stay in host memory on a GPU too. (``.cpu()`` copies cannot be told apart on the CPU and are not counted.)"""

    METHODS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, trainer) -> None:
        import helpers.training.trainer as train_module

        self.count, self.edge_checks, self.in_edge_check = 0, 0, False
        host_counters = lambda: [state.get("step") for state in trainer.optimizer.state.values()]  # noqa: E731
        for method in self.METHODS:
            original = getattr(torch.Tensor, method)

            def counting(tensor, *args, _original=original, **kwargs):
                if not self.in_edge_check and not any(tensor is counter for counter in host_counters()):
                    self.count += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, method, counting)
        real_check = train_module.check_image_batch

        def edge_check(images, *args, **kwargs):
            assert images.device.type == "cpu"
            self.edge_checks, self.in_edge_check = self.edge_checks + 1, True
            try:
                return real_check(images, *args, **kwargs)
            finally:
                self.in_edge_check = False

        monkeypatch.setattr(train_module, "check_image_batch", edge_check)


def test_a_float16_training_step_reads_from_the_device_twice(sample_pairs, cache_root, tmp_path, monkeypatch):
    """CPU float16 autocast with GradScaler("cpu") runs the GPU's code path; it used to read 10 numbers back per step
    (range checks in the network and the loss, the loss twice, the finiteness flag, the loss scale twice)."""
    trainer = make_trainer("dncnn", sample_pairs, cache_root, tmp_path, amp=True, amp_dtype="float16")
    assert trainer.scaler.is_enabled()
    batches = list(trainer.train_loader)  # made before counting: data loading is not the step
    reads = DeviceReads(monkeypatch, trainer)
    counts = []
    for steps in (1, 4):
        trainer.train_loader, before = batches[:steps], reads.count
        trainer.train_epoch()
        counts.append(reads.count - before)
    assert len(batches) == 4 and (counts[1] - counts[0]) / 3 == 2  # per step: the loss with its finiteness, and GradScaler's found-inf check
    assert reads.edge_checks == 2 * (1 + 4)  # inputs and targets of every batch were still checked, in host memory


def test_a_unet_step_makes_no_filter_kernel_on_the_device(sample_pairs, cache_root, tmp_path):
    """kornia makes the SSIM and Sobel kernels with ``torch.tensor(..., device=cuda)`` on every call: a copy from host
    memory that waits for the GPU, two per step of the UNet's default loss (4 synchronisations a step, not 2).
    The kernels are now made once per device; counted here by code location, after a first step."""
    trainer = make_trainer("unet", sample_pairs, cache_root, tmp_path, amp=True, amp_dtype="float16",
                           loss=recipes.STAGE_DEFAULTS["unet"].loss)
    trainer.loss = build_loss(recipes.STAGE_DEFAULTS["unet"].loss)
    assert set(trainer.loss.terms) == {"l1", "ssim", "sobel"}
    batches = list(trainer.train_loader)
    trainer.train_loader = batches[:1]
    trainer.train_epoch()  # the first step makes the kernels
    trainer.train_loader = batches
    with SyncCounter("cpu") as syncs:
        trainer.train_epoch()
    made = {location: count for location, count in syncs.counts.items() if "losses.py" in location or "kornia" in location}
    assert made == {}


def test_steps_skipped_by_the_loss_scaler_are_counted(sample_pairs, cache_root, tmp_path):
    """Counted from Adam's step counter (no read of the loss scale): a scale of 2**40 overflows float16 gradients."""
    trainer = make_trainer("dncnn", sample_pairs, cache_root, tmp_path, amp=True, amp_dtype="float16")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    start = {name: value.clone() for name, value in trainer.raw_model.named_parameters()}
    assert trainer.train_epoch()[1] == QUICK["steps_per_epoch"]
    assert all(torch.equal(value, start[name]) for name, value in trainer.raw_model.named_parameters())
    assert trainer.scaler.get_scale() == 2.0 ** (40 - QUICK["steps_per_epoch"])
    trainer.scaler = torch.amp.GradScaler("cpu")
    assert trainer.train_epoch()[1] == 0


# ----------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def dncnn_checkpoint(sample_pairs, cache_root, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dncnn_run")
    train, val = make_datasets("dncnn", sample_pairs, cache_root)
    fit(TINY["dncnn"](), train, val, config={"loss": LOSSES["dncnn"], **QUICK, "steps_per_epoch": 1}, checkpoint_dir=folder, epochs=1)
    return folder / "last.pt"


@pytest.mark.parametrize(
    "make_file, message",
    [
        (lambda good, path: path.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "not a readable checkpoint"),
        (lambda good, path: path.write_text("hello, I am not a checkpoint\n"), "not a readable checkpoint"),
        (lambda good, path: torch.save({"weights": torch.zeros(2)}, path), "not an image-repair checkpoint"),
        (lambda good, path: export_weights(load_model(good), path), "not a training checkpoint"),
    ],
    ids=["truncated", "text", "foreign", "inference-only"],
)
def test_resume_from_a_bad_file_names_it(make_file, message, dncnn_checkpoint, sample_pairs, cache_root, tmp_path):
    make_file(dncnn_checkpoint, tmp_path / "last.pt")
    train, val = make_datasets("dncnn", sample_pairs, cache_root)
    with pytest.raises(CheckpointError, match=message) as error:
        fit(TINY["dncnn"](), train, val, checkpoint_dir=tmp_path, epochs=2, resume=True, **QUICK)
    assert str(tmp_path / "last.pt") in str(error.value)


@pytest.mark.parametrize("other", [lambda: EDSR(num_blocks=2, channels=16), lambda: DnCNN(depth=6, channels=16)], ids=["edsr", "deeper-dncnn"])
def test_resume_with_another_architecture_names_the_file(other, dncnn_checkpoint, sample_pairs, cache_root, tmp_path):
    (tmp_path / "last.pt").write_bytes(dncnn_checkpoint.read_bytes())
    stage = "edsr" if isinstance(other(), EDSR) else "dncnn"
    train, val = make_datasets(stage, sample_pairs, cache_root)
    with pytest.raises(CheckpointError, match="holds a .*dncnn.* but the model to train is") as error:
        fit(other(), train, val, checkpoint_dir=tmp_path, epochs=2, resume=True, **QUICK)
    assert str(tmp_path / "last.pt") in str(error.value)


def test_cli_reports_a_bad_checkpoint_in_one_line(cache_root, sample_pairs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    (tmp_path / "last.pt").write_bytes(b"\x00" * 100)
    assert main(cli_train_args(tmp_path, "--epochs", "1", "--steps-per-epoch", "1", "--resume")) == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(tmp_path / "last.pt") in error_lines[0]


# ----------------------------------------------------------------------------- distributed


def test_torchrun_two_gloo_processes_write_one_checkpoint(cache_root, sample_pairs, tmp_path, monkeypatch):
    out = tmp_path / "ddp"
    args = cli_train_args(out, "--epochs", "1", "--steps-per-epoch", "2", "--device", "cpu")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "helpers", *args]
    result = subprocess.run(command, cwd=REPO, env=subprocess_env(cache_root), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]
    assert result.stdout.count("epoch 1/1:") == 1  # only rank 0 reports

    # The all-reduced validation PSNR equals a single-process evaluation over the whole validation set.
    state = load_checkpoint(out / "last.pt")
    assert state["global_step"] == 2 and state["config"]["batch_size"] == 2
    parsed = build_parser().parse_args(args)

    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    _, val = recipes.build_datasets("dncnn", config_from_args(parsed))  # the CLI's own recipe, so the crops are the same
    metrics = validate(load_model(out / "last.pt"), DataLoader(val), build_loss(state["config"]["loss"]), torch.device("cpu"))
    assert metrics["val_psnr"] == pytest.approx(state["history"]["val_psnr"][-1], abs=1e-4)
    assert metrics["val_loss"] == pytest.approx(state["history"]["val_loss"][-1], rel=1e-4)



def run_ddp_worker(mode: str, out: Path, cache_root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "ddp_worker.py"), mode, str(out)]
    return subprocess.run(command, cwd=REPO, env=subprocess_env(cache_root), capture_output=True, text=True, timeout=300)


def test_ddp_ranks_validate_with_the_same_batchnorm_statistics(cache_root, tmp_path):
    """Each rank's BatchNorm sees its own batches; validation (all-reduced) must use the statistics that are saved."""
    result = run_ddp_worker("buffers", tmp_path, cache_root)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"buffers_rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert ranks[0]["body.3.num_batches_tracked"] == 6
    assert all(torch.equal(value, ranks[1][name]) for name, value in ranks[0].items())
    saved = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(value, ranks[0][name]) for name, value in saved.items() if name in ranks[0])


def test_ranks_wait_for_a_cache_longer_than_the_process_group_timeout(cache_root, tmp_path):
    result = run_ddp_worker("slow-cache", tmp_path, cache_root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["done_rank0", "done_rank1"]


def test_cli_training_options_reach_the_training_set_only(cache_root, tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    dncnn = build_parser().parse_args(cli_train_args(tmp_path, "--clean-fraction", "0.3", "--sigma", "5,40",
                                                              "--blurry-fraction", "0.4", "--colour-augment", "0.5"))
    train, val = recipes.build_datasets("dncnn", config_from_args(dncnn))
    assert (train.clean_fraction, val.clean_fraction) == (0.3, 0.0)  # validation stays noisy
    assert (train.blurry_fraction, val.blurry_fraction) == (0.4, 0.0)  # ... sharp
    assert (train.colour_augment, val.colour_augment) == (0.5, 0.0)  # ... and in its own colours
    assert train.sigma == val.sigma == (5.0, 40.0)
    unet_args = cli_train_args(tmp_path, "--synthetic-blur", "0.7")
    unet_args[1] = "unet"
    train, val = recipes.build_datasets("unet", config_from_args(build_parser().parse_args(unet_args)))
    assert (train.synthetic_blur, val.synthetic_blur) == (0.7, 0.0)


def test_init_starts_from_given_weights_with_the_requested_schedule(cache_root, tmp_path, monkeypatch, capsys):
    import helpers.commands.train as train_module

    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    torch.manual_seed(3)
    start = DnCNN(depth=4, channels=8)
    nn.init.normal_(start.body[-1].weight)  # not the zero-initialised default
    export_weights(start, tmp_path / "start.pt")
    seen = {}
    monkeypatch.setattr(train_module, "fit", lambda model, *args, config, **kwargs: seen.update(model=model, config=config))
    args = cli_train_args(tmp_path / "run", "--init", str(tmp_path / "start.pt"), "--plateau-patience", "7")
    assert train_command(build_parser().parse_args(args)) == 0
    assert seen["model"].arch == start.arch and seen["config"]["plateau_patience"] == 7
    expected = load_model(tmp_path / "start.pt").state_dict()  # float16 round trip of the export
    assert all(torch.equal(value, expected[key]) for key, value in seen["model"].state_dict().items())

    export_weights(EDSR(num_blocks=1, channels=8), tmp_path / "edsr.pt")
    args = cli_train_args(tmp_path / "run", "--init", str(tmp_path / "edsr.pt"))
    assert train_command(build_parser().parse_args(args)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(tmp_path / "edsr.pt") in error[0] and "expected 'dncnn'" in error[0]

def test_deterministic_mode_holds_for_the_run_only(sample_pairs, cache_root, tmp_path, monkeypatch):
    """What a resumed CUDA run needs to match an uninterrupted one: deterministic kernels and no cuDNN autotuning."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # as prepare_for_inference leaves it on CUDA
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # (restored to unset afterwards)
    seen = []

    class RecordingLoss(nn.MSELoss):
        def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark))
            return super().forward(prediction, target)

    train, val = make_datasets("dncnn", sample_pairs, cache_root)
    fit(TINY["dncnn"](), train, val, RecordingLoss(), checkpoint_dir=tmp_path, epochs=1, deterministic=True,
        **{**QUICK, "steps_per_epoch": 1})
    assert seen and set(seen) == {(True, False)}
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == (False, True)
    assert load_checkpoint(tmp_path / "last.pt")["config"]["deterministic"] is True
    parsed = build_parser().parse_args(cli_train_args(tmp_path, "--deterministic"))
    assert parsed.deterministic and not build_parser().parse_args(cli_train_args(tmp_path)).deterministic


def test_train_command_rejects_cuda_without_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert train_command(build_parser().parse_args(cli_train_args(tmp_path, "--device", "cuda"))) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    from helpers.training.reproducibility import rng_state, set_rng_state

    import random

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    actual = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], actual[0]) and np.array_equal(expected[1], actual[1]) and expected[2] == actual[2]


# ----------------------------------------------------------------------------- photos: sources


def test_photos_source_trains_with_held_out_photos_and_validates_the_cascade(tmp_path, capsys):
    from helpers.data import PhotoDegradations, PhotoLibrary, build_photo_dataset, parse_photo_folders
    from helpers.pipeline import Restorer
    from tests.test_data import write_photos

    folder = write_photos(tmp_path / "photos", 8)
    weights = tmp_path / "cascade_weights"
    torch.manual_seed(0)
    for name, network in {"dncnn": DnCNN(depth=3, channels=8), "unet": UNet(base_channels=8, depth=2),
                          "edsr": EDSR(num_blocks=1, channels=8)}.items():
        export_weights(network, weights / f"{name}.pt", half=False)
    out = tmp_path / "run"
    args = ["train", "unet", "--data", f"photos:{folder}", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2",
            "--batch-size", "2", "--patch", "32", "--val-patch", "24", "--val-items", "3", "--init", str(weights / "unet.pt"),
            "--cascade-weights", str(weights), "--sharp-fraction", "0.25"]
    assert main(args) == 0
    assert "cascade PSNR" in capsys.readouterr().out
    state = load_checkpoint(out / "last.pt")
    assert state["config"]["data"]["val_fraction"] == 0.05 and state["config"]["data"]["sharp_fraction"] == 0.25
    recorded = state["history"]["cascade_psnr"][-1]

    # The same number from the trained network, the other stages' files and the held-out crops (skimage PSNR).
    validation = PhotoLibrary(parse_photo_folders(str(folder)), "val", 0.05, seed=0)
    assert len(validation) == 1  # one of the 8 photos held out
    degradations = PhotoDegradations(nonuniform_fraction=0.2)  # the CLI's defaults; no sharp share in validation
    crops = build_photo_dataset("pipeline", validation, patch_size=24, length=8, seed=0, degradations=degradations)
    models = {name: load_model(weights / f"{name}.pt") for name in ("dncnn", "edsr")} | {"unet": load_model(out / "last.pt")}
    restorer = Restorer(models, device="cpu", fp32=True, deblur="always")  # a UNet in training: its ramp is not known yet
    scores = []
    for noisy, sharp in (crops[i] for i in range(len(crops))):
        restored = restorer.restore_tensor(noisy[None])[0].permute(1, 2, 0).numpy()
        scores.append(peak_signal_noise_ratio(sharp.permute(1, 2, 0).numpy(), restored, data_range=1.0))
    assert recorded == pytest.approx(np.mean(scores), abs=0.01)

    assert main([*args, "--cascade-weights", "none", "--out", str(tmp_path / "no_cascade")]) == 0
    assert math.isnan(load_checkpoint(tmp_path / "no_cascade" / "last.pt")["history"]["cascade_psnr"][-1])


def test_cascade_validation_gates_a_finished_unet_as_its_file_says(tmp_path):
    """Training EDSR beside a UNet whose file records a ramp it never reaches: the validated cascade runs without
    the UNet's correction, as Restorer.from_weights would run those files."""
    from helpers.data import PhotoDegradations, PhotoLibrary, build_photo_dataset, parse_photo_folders
    from helpers.pipeline import Restorer
    from conftest import without_identity_start
    from tests.test_data import write_photos

    folder = write_photos(tmp_path / "photos", 8)
    weights = tmp_path / "cascade_weights"
    torch.manual_seed(0)
    unet = without_identity_start(UNet(base_channels=8, depth=2))  # a correction the default ramp would keep
    for name, network in {"dncnn": DnCNN(depth=3, channels=8), "unet": unet, "edsr": EDSR(num_blocks=1, channels=8)}.items():
        export_weights(network, weights / f"{name}.pt", half=False, **({"deblur_ramp": (50.0, 100.0)} if name == "unet" else {}))
    out = tmp_path / "run"
    assert main(["train", "edsr", "--data", f"photos:{folder}", "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1",
                 "--batch-size", "2", "--patch", "16", "--val-patch", "24", "--val-items", "3",
                 "--init", str(weights / "edsr.pt"), "--cascade-weights", str(weights)]) == 0
    recorded = load_checkpoint(out / "last.pt")["history"]["cascade_psnr"][-1]
    validation = PhotoLibrary(parse_photo_folders(str(folder)), "val", 0.05, seed=0)
    crops = build_photo_dataset("pipeline", validation, patch_size=24, length=8, seed=0,
                                degradations=PhotoDegradations(nonuniform_fraction=0.2))
    models = {"dncnn": load_model(weights / "dncnn.pt"), "edsr": load_model(out / "last.pt")}
    without_unet = Restorer(models, stages=("dncnn", "edsr", "unsharp"), device="cpu", fp32=True)
    scores = [peak_signal_noise_ratio(sharp.permute(1, 2, 0).numpy(),
                                      without_unet.restore_tensor(noisy[None])[0].permute(1, 2, 0).numpy(), data_range=1.0)
              for noisy, sharp in (crops[i] for i in range(len(crops)))]
    assert recorded == pytest.approx(np.mean(scores), abs=0.01)


# ----------------------------------------------------------------------------- kills, damaged state, changed options


class Killed(BaseException):
    """Stands for SIGKILL at a checkpoint-write point: nothing after it runs (no except Exception catches it)."""


def same_checkpoint(first: dict, second: dict, where: str = "") -> None:
    """Assert two checkpoint states are bit-identical, except the wall-clock ``seconds`` of the history."""
    assert type(first) is type(second), where
    if isinstance(first, dict):
        assert first.keys() == second.keys(), where
        for key in first:
            if not (where.endswith("history") and key in TIMING_KEYS):
                same_checkpoint(first[key], second[key], f"{where}.{key}")
    elif isinstance(first, (list, tuple)):
        assert len(first) == len(second), where
        for index, (a, b) in enumerate(zip(first, second)):
            same_checkpoint(a, b, f"{where}[{index}]")
    elif isinstance(first, torch.Tensor):
        assert first.dtype == second.dtype and torch.equal(first, second), where
    else:
        assert first == second or (first != first and second != second), where  # NaN equals NaN here


def test_a_kill_at_every_checkpoint_write_then_resume_ends_bit_identical(sample_pairs, cache_root, tmp_path, monkeypatch):
    import helpers.training.trainer as train_module

    def run(folder: Path, resume: bool) -> None:
        torch.manual_seed(0)
        train, val = make_datasets("dncnn", sample_pairs, cache_root)
        fit(TINY["dncnn"](), train, val, config={"loss": LOSSES["dncnn"], "lr": 1e-3, **QUICK, "epochs": 2},
            checkpoint_dir=folder, resume=resume)

    real_save, writes = train_module.save_checkpoint, []
    monkeypatch.setattr(train_module, "save_checkpoint", lambda path, state: writes.append(Path(path).name) or real_save(path, state))
    run(tmp_path / "straight", resume=False)
    straight = {name: load_checkpoint(tmp_path / "straight" / name) for name in ("last.pt", "best.pt")}
    assert straight["best.pt"]["epoch"] == 2 and len(writes) == 4  # both epochs improved: every write point is hit

    for kill_at in range(len(writes)):
        count = iter(range(len(writes)))

        def save_until_killed(path, state):
            if next(count) == kill_at:
                raise Killed(f"killed before writing {Path(path).name}")
            real_save(path, state)

        folder = tmp_path / f"killed_before_write_{kill_at}"
        monkeypatch.setattr(train_module, "save_checkpoint", save_until_killed)
        with pytest.raises(Killed):
            run(folder, resume=False)
        monkeypatch.setattr(train_module, "save_checkpoint", real_save)
        run(folder, resume=True)
        for name in ("last.pt", "best.pt"):
            same_checkpoint(load_checkpoint(folder / name), straight[name], f"kill before write {kill_at + 1}: {name}")


def test_partial_files_of_a_killed_run_are_removed(sample_pairs, cache_root, tmp_path):
    for name in (".last.k3j9x2ab.partial.pt", ".best.0q1w2e3r.partial.pt"):
        (tmp_path / name).write_bytes(b"")  # what SIGKILL during torch.save leaves
    train, val = make_datasets("edsr", sample_pairs, cache_root)
    fit(TINY["edsr"](), train, val, config={"loss": LOSSES["edsr"], **QUICK, "steps_per_epoch": 1}, checkpoint_dir=tmp_path, epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


@pytest.fixture(scope="module")
def cli_run(cache_root, sample_pairs, tmp_path_factory) -> Path:
    """OUT of one epoch of ``python -m helpers train dncnn`` with the CLI defaults of cli_train_args (one step)."""
    out = tmp_path_factory.mktemp("cli_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
        assert main(cli_train_args(out, "--epochs", "1", "--steps-per-epoch", "1")) == 0
    return out


def copy_of_run(run: Path, folder: Path, change=None) -> Path:
    folder.mkdir(exist_ok=True)
    state = load_checkpoint(run / "last.pt")
    if change:
        change(state)
    torch.save(state, folder / "last.pt")
    return folder


DAMAGED = {
    "empty-rng": (lambda s: s.update(rng={}), "rng"),
    "empty-early-stopping": (lambda s: s.update(early_stopping={}), "early_stopping"),
    "history-as-list": (lambda s: s.update(history=[1, 2]), "history"),
    "history-values-not-lists": (lambda s: s["history"].update(epoch=1), "history"),
    "epoch-as-string": (lambda s: s.update(epoch="1"), "epoch"),
    "optimizer-as-list": (lambda s: s.update(optimizer=[]), "optimizer"),
}


@pytest.mark.parametrize("case", DAMAGED, ids=list(DAMAGED))
def test_resume_from_damaged_training_state_is_a_one_line_setup_error(case, cli_run, cache_root, tmp_path, monkeypatch, capsys):
    change, field = DAMAGED[case]
    folder = copy_of_run(cli_run, tmp_path / "run", change)
    before = (folder / "last.pt").read_bytes()
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    assert main(cli_train_args(folder, "--epochs", "2", "--steps-per-epoch", "1", "--resume")) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder / 'last.pt'}: ") and field in errors[0], captured.err
    assert "Traceback" not in captured.err
    assert (folder / "last.pt").read_bytes() == before


@pytest.mark.parametrize("option, value, change", [
    ("--lr", "1e-3", "lr 0.0003 -> 0.001"),
    ("--batch-size", "4", "batch_size 2 -> 4"),
    ("--patch", "36", "data.patch 40 -> 36"),
    ("--seed", "1", "seed 0 -> 1"),
])
def test_resume_refuses_changed_run_defining_options(option, value, change, cli_run, cache_root, tmp_path, monkeypatch, capsys):
    folder = copy_of_run(cli_run, tmp_path / "run")
    before = (folder / "last.pt").read_bytes()
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    assert main(cli_train_args(folder, "--epochs", "2", "--steps-per-epoch", "1", "--resume", option, value)) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder / 'last.pt'}: ") and change in errors[0]
    assert "caching" not in captured.err  # refused before any data was built
    assert "--init" in errors[0]  # how to start a new run from these weights instead
    assert (folder / "last.pt").read_bytes() == before


def test_resume_may_change_the_number_of_epochs(cli_run, cache_root, tmp_path, monkeypatch):
    folder = copy_of_run(cli_run, tmp_path / "run")
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    assert main(cli_train_args(folder, "--epochs", "2", "--steps-per-epoch", "1", "--resume")) == 0
    state = load_checkpoint(folder / "last.pt")
    assert state["epoch"] == 2 and state["config"]["epochs"] == 2 and state["history"]["epoch"] == [1, 2]


def test_a_run_recorded_before_an_architecture_argument_existed_resumes(cli_run, cache_root, tmp_path, monkeypatch):
    """The v5 EDSR run lacked 'pad_colour' (added later, default None): it stands for the default."""
    def drop_pad_colour(state):
        del state["arch"]["kwargs"]["pad_colour"]

    folder = copy_of_run(cli_run, tmp_path / "run", change=drop_pad_colour)
    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    assert main(cli_train_args(folder, "--epochs", "2", "--steps-per-epoch", "1", "--resume")) == 0
    assert load_checkpoint(folder / "last.pt")["epoch"] == 2


@pytest.mark.parametrize("value", ["1.5", "1", "0", "-0.1", "nan"])
def test_val_fraction_must_be_a_share(value, tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(cli_train_args(tmp_path, "--val-fraction", value))
    assert "--val-fraction: expected a share between 0 and 1 (exclusive)" in capsys.readouterr().err
    assert build_parser().parse_args(cli_train_args(tmp_path, "--val-fraction", "0.3")).val_fraction == 0.3


def test_init_from_an_absurd_architecture_is_refused_in_one_line(cache_root, tmp_path, monkeypatch, capsys):
    from helpers.checkpoint import CHECKPOINT_FORMAT

    monkeypatch.setenv("IMAGE_REPAIR_CACHE", str(cache_root))
    small = DnCNN(depth=3, channels=4)
    torch.save({"format": CHECKPOINT_FORMAT, "arch": {"name": "dncnn", "kwargs": {**small.arch["kwargs"], "channels": 10**9}},
                "model": small.state_dict()}, tmp_path / "absurd.pt")
    args = cli_train_args(tmp_path / "run", "--init", str(tmp_path / "absurd.pt"))
    assert train_command(build_parser().parse_args(args)) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert errors == [f"error: {tmp_path / 'absurd.pt'}: dncnn argument channels=1000000000 is outside 0..4096; "
                      "refused before building (a damaged or hostile file)"]


def test_changed_run_options_compare_what_both_runs_record():
    from helpers.training.config import _changed_run_options

    stored = {"lr": 3e-4, "epochs": 5, "seed": 0, "arch": {"name": "dncnn"},
              "data": {"patch": 50, "sigma": [0.0, 55.0], "init": "a.pt"}}
    assert _changed_run_options(stored, {**stored, "epochs": 9, "data": {**stored["data"], "sigma": (0.0, 55.0), "init": "b.pt"}}) == []
    assert _changed_run_options({**stored, "val_batch_size": 1}, {**stored, "val_batch_size": None}) == []  # batching only
    assert _changed_run_options(stored, {**stored, "new_option": 1, "data": {**stored["data"], "new_entry": 2}}) == []
    assert _changed_run_options(stored, {**stored, "lr": 1e-3, "data": {**stored["data"], "patch": 40}}) == [
        "data.patch 50 -> 40", "lr 0.0003 -> 0.001"]


def test_a_resumed_run_may_find_its_data_in_another_folder_but_not_other_data():
    """A new Colab VM extracts the same dataset under another /content; the run goes on. Another set does not."""
    from helpers.training.config import _changed_run_options

    stored = {"data": {"source": "photos:/vm1/BSDS432=0.4,/vm1/Urban100=0.6", "kernels": "/vm1/kernels/levin09.npz"}}
    moved = {"data": {"source": "photos:/vm2/data/BSDS432=0.4,/vm2/data/Urban100=0.6", "kernels": "/vm2/levin09.npz"}}
    assert _changed_run_options(stored, moved) == []
    other = {"data": {"source": "photos:/vm1/BSDS432=0.5,/vm1/Urban100=0.5", "kernels": "/vm1/kernels/levin09.npz"}}
    assert _changed_run_options(stored, other) == [
        "data.source photos:/vm1/BSDS432=0.4,/vm1/Urban100=0.6 -> photos:/vm1/BSDS432=0.5,/vm1/Urban100=0.5"]
    assert _changed_run_options({"data": {"source": "gopro:/a/GOPRO_Large"}}, {"data": {"source": "sample"}}) != []
