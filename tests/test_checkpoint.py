"""Checkpoint files: round trip, atomic writes, weights_only loading and clear errors."""

from __future__ import annotations

import resource
import shutil
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch

import helpers.checkpoint as checkpoint_module
from helpers.checkpoint import (
    CHECKPOINT_FORMAT, CheckpointError, average_models, export_weights, load_checkpoint, load_model, load_weights,
    save_checkpoint,
)
from helpers.models import EDSR, DnCNN, UNet
from hostile import ONE_GIB, flip_byte_in_record, run_measured, zip_bomb_torch_file


def test_exported_weights_rebuild_the_same_network_from_the_file_alone(tmp_path) -> None:
    model = EDSR(scale=3, num_blocks=2, channels=8).eval()
    path = export_weights(model, tmp_path / "edsr.pt", half=False)
    rebuilt = load_model(path, expected_name="edsr")
    images = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), model(images))
    assert rebuilt.scale == 3 and not rebuilt.training


def test_loaded_weights_carry_what_the_file_records_beside_the_network(tmp_path) -> None:
    unet = UNet(base_channels=4, depth=2).eval()
    path = export_weights(unet, tmp_path / "unet.pt", half=False, deblur_ramp=[0.2, 0.4], source="a test",
                          history={"val_psnr": [25.0]}, cascade={"unsharp": {"sigma": 1.5, "amount": 0.8, "threshold": 0.01}})
    loaded = load_weights(str(path), expected_name="unet")
    assert loaded.path == path and loaded.deblur_ramp == (0.2, 0.4)  # checked: a (low, high) tuple of floats
    mask = loaded.unsharp
    assert (mask.sigma, mask.amount, mask.threshold) == (1.5, 0.8, 0.01)
    assert dict(loaded.extras) == {key: value for key, value in load_checkpoint(path).items() if key not in ("format", "arch", "model")}
    assert set(loaded.extras) == {"deblur_ramp", "source", "history", "cascade"}
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images), unet(images))
        torch.testing.assert_close(load_model(path)(images), unet(images))  # load_model: the same network
    with pytest.raises(TypeError):
        loaded.extras["source"] = "changed"  # read-only, like the dataclass
    plain = load_weights(export_weights(DnCNN(depth=3, channels=4), tmp_path / "dncnn.pt"))
    assert plain.deblur_ramp is None and plain.unsharp is None and dict(plain.extras) == {}


@pytest.mark.parametrize("records, message", [
    ({"deblur_ramp": (0.4, 0.2)}, r"unet\.pt: deblur_ramp: expected 0 <= low < high, received \(0.4, 0.2\)"),
    ({"deblur_ramp": "wide"}, r"unet\.pt: deblur_ramp: expected \(low, high\)"),
    ({"cascade": {"unsharp": {"sigma": -1.0, "amount": 0.5, "threshold": 0.0}}}, r"unet\.pt: cascade unsharp settings .*sigma > 0"),
    ({"cascade": {"unsharp": {"radius": 2}}}, r"unet\.pt: cascade unsharp settings \{'radius': 2\}: .*radius"),
    ({"cascade": {"unsharp": [1.0, 0.5]}}, r"unet\.pt: cascade unsharp settings \[1.0, 0.5\]"),
], ids=["ramp-reversed", "ramp-string", "unsharp-negative", "unsharp-unknown-argument", "unsharp-list"])
def test_bad_records_are_refused_in_one_line_naming_the_file(tmp_path, records, message) -> None:
    path = export_weights(UNet(base_channels=4, depth=2), tmp_path / "unet.pt", **records)
    with pytest.raises(CheckpointError, match=message) as error:
        load_weights(path)
    assert "\n" not in str(error.value)


def test_half_precision_export_is_smaller_and_close(tmp_path) -> None:
    model = DnCNN(depth=5, channels=16).eval()
    full, half = export_weights(model, tmp_path / "full.pt", half=False), export_weights(model, tmp_path / "half.pt")
    assert half.stat().st_size < 0.7 * full.stat().st_size
    images = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert (load_model(half)(images) - model(images)).abs().max() < 2e-3


def test_bad_checkpoints_raise_errors_naming_the_file(tmp_path) -> None:
    good = export_weights(DnCNN(depth=3, channels=4), tmp_path / "dncnn.pt")
    with pytest.raises(CheckpointError, match="dncnn.pt: holds a 'dncnn' network, expected 'edsr'"):
        load_model(good, expected_name="edsr")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="foreign.pt: not an image-repair checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="absent.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    state = load_checkpoint(good)
    state["arch"]["kwargs"]["channels"] = 8
    save_checkpoint(tmp_path / "mismatch.pt", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CheckpointError, match="mismatch.pt: weights do not fit dncnn"):
        load_model(tmp_path / "mismatch.pt")


def test_checkpoints_refuse_arbitrary_pickles(tmp_path) -> None:
    torch.save({"format": "image-repair-checkpoint/1", "arch": PurePosixPath("/etc/passwd")}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="pickle.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = export_weights(DnCNN(depth=3, channels=4), tmp_path / "last.pt")
    before = path.read_bytes()

    def crash(obj, file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        export_weights(DnCNN(depth=3, channels=4), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ----------------------------------------------------------------------------- malformed and hostile checkpoints


def small_dncnn_state() -> dict:
    return {"arch": DnCNN(depth=3, channels=4).arch, "model": DnCNN(depth=3, channels=4).state_dict()}


def save_raw(path, state: dict):
    """A checkpoint file as a careless or hostile writer makes it (no checks on the way out)."""
    torch.save({"format": CHECKPOINT_FORMAT, **state}, path)
    return path


MALFORMED = {
    "unknown-argument": (lambda s: s["arch"]["kwargs"].update(wings=2), "unknown argument 'wings'"),
    "missing-arch": (lambda s: s.pop("arch"), "lacks 'arch'"),
    "arch-as-string": (lambda s: s.update(arch="dncnn"), "'arch' must be"),
    "kwargs-as-list": (lambda s: s["arch"].update(kwargs=[3, 4]), "'arch' must be"),
    "unknown-network": (lambda s: s["arch"].update(name="resnet"), "unknown network 'resnet'"),
    "string-argument": (lambda s: s["arch"]["kwargs"].update(depth="17"), "depth='17'"),
    "missing-weights": (lambda s: s.pop("model"), "lacks 'model'"),
    "non-tensor-weights": (lambda s: s["model"].update({"body.0.weight": [1.0, 2.0]}), "body.0.weight is a list, not a tensor"),
    "weights-as-list": (lambda s: s.update(model=[torch.zeros(1)]), "'model' must be"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_checkpoints_raise_one_line_errors(tmp_path, case) -> None:
    change, message = MALFORMED[case]
    state = small_dncnn_state()
    change(state)
    path = save_raw(tmp_path / "dncnn.pt", state)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 10**9}, r"channels=1000000000 .*outside 0\.\.4096"),
    ({"depth": 10**6}, r"depth=1000000 .*outside 0\.\.4096"),
    ({"depth": 200, "channels": 4096}, "weights do not fit dncnn"),  # in bounds, but a real build needs 120 GB
])
def test_absurd_architectures_are_refused_before_anything_is_built(tmp_path, monkeypatch, kwargs, message) -> None:
    real_build = checkpoint_module.build_model

    def build_on_meta_only(name, **arguments):
        if torch.empty(0).device.type != "meta":
            raise AssertionError(f"a real {name} {arguments} was built before its shapes were checked")
        return real_build(name, **arguments)

    monkeypatch.setattr(checkpoint_module, "build_model", build_on_meta_only)
    state = small_dncnn_state()
    state["arch"]["kwargs"].update(kwargs)
    path = save_raw(tmp_path / "dncnn.pt", state)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_matching_shapes_are_loaded_after_the_check(tmp_path) -> None:
    model = DnCNN(depth=4, channels=6)
    path = export_weights(model, tmp_path / "dncnn.pt", half=False)
    rebuilt = load_model(path)
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in rebuilt.state_dict().items())
    assert all(parameter.device.type == "cpu" for parameter in rebuilt.parameters())


@pytest.mark.parametrize("case", ["unknown-argument", "arch-as-string", "non-tensor-weights"])
def test_restore_and_evaluate_report_a_malformed_checkpoint_in_one_line(tmp_path, capsys, case) -> None:
    from helpers.commands import main
    from helpers.io import write_image

    change, message = MALFORMED[case]
    state = small_dncnn_state()
    change(state)
    weights = tmp_path / "weights"
    weights.mkdir()
    save_raw(weights / "dncnn.pt", state)
    image = write_image(tmp_path / "in.png", np.zeros((40, 40, 3), np.uint8))
    assert main(["restore", str(image), "-o", str(tmp_path / "out.png"), "--weights", str(weights), "--stages", "dncnn",
                 "--device", "cpu"]) == 2
    assert main(["evaluate", "--task", "denoise", "--weights", str(weights / "dncnn.pt"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith(f"error: {weights / 'dncnn.pt'}: ") for line in errors), captured.err
    assert "Traceback" not in captured.err


def test_evaluate_refuses_a_pickle_in_one_line(tmp_path, capsys) -> None:
    from helpers.commands import main

    torch.save({"format": CHECKPOINT_FORMAT, "arch": PurePosixPath("/etc/passwd")}, tmp_path / "pickle.pt")
    assert main(["evaluate", "--task", "sr", "--weights", str(tmp_path / "pickle.pt"), "--device", "cpu",
                 "--out", str(tmp_path / "eval")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'pickle.pt'}: not a readable checkpoint")


def test_averaged_models_hold_the_mean_of_each_weight(tmp_path) -> None:
    paths = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        paths.append(export_weights(EDSR(num_blocks=2, channels=8), tmp_path / f"edsr{seed}.pt", half=False))
    averaged = average_models(paths, expected_name="edsr")
    states = [load_model(path).state_dict() for path in paths]
    for key, value in averaged.state_dict().items():
        torch.testing.assert_close(value, sum(state[key] for state in states) / 3, msg=key)
    assert averaged.arch == load_model(paths[0]).arch and not averaged.training
    roundtrip = load_model(export_weights(averaged, tmp_path / "soup.pt", half=False))
    torch.testing.assert_close(roundtrip.state_dict(), averaged.state_dict())


def test_models_of_another_architecture_are_not_averaged(tmp_path) -> None:
    first = export_weights(EDSR(num_blocks=2, channels=8), tmp_path / "small.pt")
    second = export_weights(EDSR(num_blocks=3, channels=8), tmp_path / "deeper.pt")
    with pytest.raises(CheckpointError, match="deeper.pt: holds .* cannot be averaged"):
        average_models([first, second])
    with pytest.raises(ValueError, match="no checkpoints"):
        average_models([])


# ----------------------------------------------------------------------------- issue 28: inflation, bit rot, disk full


def test_a_deflated_tensor_is_refused_from_the_zip_directory_before_anything_is_inflated(tmp_path, monkeypatch) -> None:
    model = DnCNN(depth=3, channels=4)
    path = zip_bomb_torch_file(tmp_path / "dncnn.pt", {"format": CHECKPOINT_FORMAT, "arch": model.arch,
                                                      "model": model.state_dict()}, 256 * 2**20)
    assert path.stat().st_size < 2 * 2**20
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(k.get("map_location")) or real_load(*a, **k))
    with pytest.raises(CheckpointError, match=r"dncnn\.pt: its tensors inflate to 256\.0 MiB, more than the network it "
                                              r"declares needs .*refused before reading") as error:
        load_checkpoint(path)  # what train --resume and --init read
    assert "\n" not in str(error.value) and reads == ["meta"]  # only the structure was read: no tensor inflated


def test_a_stretched_view_is_refused_before_it_is_made_real(tmp_path) -> None:
    state = small_dncnn_state()
    first = next(key for key in state["model"] if key.endswith("weight"))
    state["model"][first] = torch.zeros(1).expand(state["model"][first].shape)  # one stored value, stride 0
    with pytest.raises(CheckpointError, match="larger than its stored data"):
        load_model(save_raw(tmp_path / "stretched.pt", state))


def test_a_network_larger_than_any_here_is_refused_before_building(tmp_path) -> None:
    state = {"arch": {"name": "edsr", "kwargs": {"channels": 4096, "num_blocks": 8}}, "model": {}}
    with torch.device("meta"):
        state["model"] = EDSR(channels=4096, num_blocks=8).state_dict()  # 2.4 G weights, declared in shapes only
    with pytest.raises(CheckpointError, match=r"more than any network here \(134,217,728 at most\)"):
        checkpoint_module.check_fit(tmp_path / "huge.pt", state["arch"], state["model"])


def test_one_flipped_byte_in_a_weight_is_refused_not_loaded(tmp_path) -> None:
    model = DnCNN(depth=3, channels=4)
    path = export_weights(model, tmp_path / "last.pt", half=False)
    load_checkpoint(path)
    flip_byte_in_record(path, "/data/0", offset=5)
    with pytest.raises(CheckpointError, match=r"last\.pt: damaged: record .*/data/0 fails its CRC-32 check"):
        load_checkpoint(path)


def test_too_little_free_space_is_refused_before_writing_naming_the_folder(tmp_path, monkeypatch) -> None:
    path = export_weights(DnCNN(depth=3, channels=4), tmp_path / "last.pt")
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda folder: shutil_usage(free=4096))
    with pytest.raises(OSError, match=rf"last\.pt: not saved: disk full \(0\.0 MiB free in {tmp_path}, about .* needed\)"):
        export_weights(DnCNN(depth=3, channels=4), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_disk_that_fills_while_saving_is_named_not_a_traceback(tmp_path, monkeypatch) -> None:
    path = export_weights(DnCNN(depth=3, channels=4), tmp_path / "last.pt")
    before = path.read_bytes()
    free = iter([2**40, 4096])  # room when checked first; full once the write has failed
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda folder: shutil_usage(free=next(free)))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))  # writes past 2000 bytes fail (Python ignores SIGXFSZ)
    try:
        with pytest.raises(OSError, match=rf"last\.pt: not saved: disk full \(.* free in {tmp_path}") as error:
            export_weights(DnCNN(depth=5, channels=32), path, half=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "enforce fail" not in str(error.value) and "\n" not in str(error.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def shutil_usage(free: int):
    return shutil._ntuple_diskusage(2**40, 2**40 - free, free)


def test_restore_refuses_a_small_weights_file_that_would_inflate_to_gigabytes_within_bounded_memory(tmp_path) -> None:
    from test_pipeline import photo, small_networks

    from helpers.io import write_image

    image = write_image(tmp_path / "in.png", photo(40, 48))
    unet = small_networks()["unet"]
    good = export_weights(unet, tmp_path / "good" / "unet.pt")
    zip_bomb_torch_file(tmp_path / "bomb" / "unet.pt", {"format": CHECKPOINT_FORMAT, "arch": unet.arch,
                                                         "model": torch.load(good, weights_only=True)["model"]},
                        3 * ONE_GIB // 2)
    assert (tmp_path / "bomb" / "unet.pt").stat().st_size < 8 * 2**20
    arguments = ["restore", str(image), "--stages", "unet", "--device", "cpu", "--fp32", "--weights"]
    code, _, normal_peak = run_measured([*arguments, str(tmp_path / "good"), "-o", str(tmp_path / "good.png")])
    assert code == 0
    code, stderr, peak = run_measured([*arguments, str(tmp_path / "bomb"), "-o", str(tmp_path / "bomb.png")])
    assert code == 2 and "unet.pt: its tensors inflate to 1.5 GiB" in stderr and len(stderr.strip().splitlines()) == 1
    assert peak < normal_peak + ONE_GIB
