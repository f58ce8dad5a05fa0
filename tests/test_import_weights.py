"""helpers.import_weights: published weights against forward passes written here from the published architectures.

The DnCNN authors' file is MATLAB v7.3 (HDF5) as MatConvNet saves it; ``write_matconvnet_v73`` writes a
small one the same way (a cell array of object references to layer structs under ``#refs#``, char arrays
as uint16, every array with its axes reversed, a 512-byte MATLAB header), and ``numpy_dncnn`` runs it the
way MatConvNet does. EDSR-PyTorch's state dict is built from its published key names and shapes and run
with ``torch.nn.functional`` on the 0-255 scale, as its ``EDSR.forward`` does.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch.nn import functional as F

from helpers.checkpoint import load_model
from helpers.commands import main
from helpers.import_weights import WeightsImportError, import_dncnn_matconvnet, import_edsr_pytorch, read_matconvnet
from helpers.models import EDSR, DnCNN
from hostile import ONE_GIB, run_measured, zip_bomb_torch_file

# ----------------------------------------------------------------------------- DnCNN, MatConvNet


def random_dncnn(depth: int = 20, channels: int = 16, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(filters (kH, kW, in, out) as MATLAB holds them, biases) of an RGB DnCNN with batch norm folded."""
    rng = np.random.default_rng(seed)
    sizes = [3] + [channels] * (depth - 1) + [3]
    return [
        (rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32), rng.normal(0, 0.05, cout).astype(np.float32))
        for cin, cout in zip(sizes[:-1], sizes[1:])
    ]


def layer_list(convs: list[tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """MatConvNet SimpleNN layers: conv, relu, conv, ..., conv (the file's 39 layers for depth 20)."""
    layers = []
    for index, (filters, bias) in enumerate(convs):
        layers.append({"type": "conv", "name": f"layer{2 * index + 1}", "weights": [filters, bias.reshape(-1, 1)],
                       "stride": np.ones((1, 1)), "pad": np.ones((1, 1)), "learningRate": np.ones((1, 2))})
        if index < len(convs) - 1:
            layers.append({"type": "relu", "name": f"layer{2 * index + 2}", "leak": np.zeros((1, 1))})
    return layers


def write_matconvnet_v73(path: Path, layers: list[dict], numeric=None) -> Path:
    """Write ``net.layers`` as MATLAB 7.3 does: HDF5 behind a 512-byte header, structs and cells under #refs#.

    ``numeric(parent, name, data)``, when given, creates each numeric dataset instead (for hostile storage).
    """
    with h5py.File(path, "w", userblock_size=512) as file:
        refs = file.create_group("#refs#")
        counter = iter(range(10**6))

        def store(value, parent, name):
            """A MATLAB value as a dataset: char -> uint16, cell -> references, numbers -> axes reversed."""
            if isinstance(value, str):
                dataset = parent.create_dataset(name, data=np.array([[ord(c)] for c in value], dtype=np.uint16))
                dataset.attrs.update({"MATLAB_class": np.bytes_(b"char"), "MATLAB_int_decode": np.int32(2)})
            elif isinstance(value, list):
                references = [store(item, refs, f"r{next(counter)}").ref for item in value]
                dataset = parent.create_dataset(name, data=np.array(references, dtype=h5py.ref_dtype).reshape(-1, 1))
                dataset.attrs["MATLAB_class"] = np.bytes_(b"cell")
            else:
                array = np.asarray(value)
                data = array.T  # HDF5 row-major: MATLAB's axes reversed
                dataset = numeric(parent, name, data) if numeric else parent.create_dataset(name, data=data)
                dataset.attrs["MATLAB_class"] = np.bytes_(b"single" if array.dtype == np.float32 else b"double")
            return dataset

        references = []
        for layer in layers:
            group = refs.create_group(f"layer{next(counter)}")
            group.attrs["MATLAB_class"] = np.bytes_(b"struct")
            for key, value in layer.items():
                store(value, group, key)
            empty = group.create_dataset("opts", data=np.zeros(2, dtype=np.uint64))  # an empty cell: its dimensions
            empty.attrs.update({"MATLAB_class": np.bytes_(b"cell"), "MATLAB_empty": np.uint8(1)})
            references.append(group.ref)
        net = file.create_group("net")
        net.attrs["MATLAB_class"] = np.bytes_(b"struct")
        cell = net.create_dataset("layers", data=np.array(references, dtype=h5py.ref_dtype).reshape(-1, 1))
        cell.attrs["MATLAB_class"] = np.bytes_(b"cell")
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .")
    return path


def numpy_dncnn(convs: list[tuple[np.ndarray, np.ndarray]], noisy: np.ndarray) -> np.ndarray:
    """MatConvNet's forward pass on an (H, W, 3) image: zero-padded 3x3 correlations, ReLUs; output = input - noise."""
    features = noisy.astype(np.float64)
    for index, (filters, bias) in enumerate(convs):
        windows = sliding_window_view(np.pad(features, ((1, 1), (1, 1), (0, 0))), (3, 3), axis=(0, 1))  # H, W, C, 3, 3
        features = np.einsum("hwcij,ijco->hwo", windows, filters.astype(np.float64)) + bias
        if index < len(convs) - 1:
            features = np.maximum(features, 0)
    return noisy - features


@pytest.fixture(scope="module")
def authors_dncnn(tmp_path_factory) -> tuple[Path, list]:
    convs = random_dncnn()
    return write_matconvnet_v73(tmp_path_factory.mktemp("mat") / "GD_Color_Blind.mat", layer_list(convs)), convs


def noisy_photo(height: int = 45, width: int = 52, sigma: float = 50) -> np.ndarray:
    """A smooth colour image with the paper's unclipped float noise (values outside [0, 1]); H != W catches a kH/kW swap."""
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    clean = np.stack([rows, cols, 0.5 + 0.4 * np.sin(6 * rows * cols)], axis=2)
    return (clean + rng.normal(0, sigma / 255, clean.shape)).astype(np.float32)


def run(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).double().numpy()


def test_v73_file_has_the_authors_structure(authors_dncnn):
    path, convs = authors_dncnn
    with h5py.File(path, "r") as file:
        layers = file["net/layers"]
        assert layers.shape == (39, 1) and layers.dtype == h5py.ref_dtype
        first = file[layers[0, 0]]
        filters = file[first["weights"][0, 0]]
        assert filters.shape == (16, 3, 3, 3) and file[first["weights"][1, 0]].shape == (1, 16)  # reversed axes
    assert open(path, "rb").read(10) == b"MATLAB 7.3"
    read = read_matconvnet(path)
    assert [layer["type"] for layer in read] == ["conv", "relu"] * 19 + ["conv"]
    np.testing.assert_array_equal(read[0]["weights"][0], convs[0][0])


def test_imported_dncnn_matches_a_numpy_forward_pass(authors_dncnn):
    path, convs = authors_dncnn
    model = import_dncnn_matconvnet(path)
    assert isinstance(model, DnCNN) and model.arch["kwargs"]["depth"] == 20
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())
    image = noisy_photo()
    assert image.min() < 0 and image.max() > 1
    expected = numpy_dncnn(convs, image)
    np.testing.assert_allclose(run(model, image), expected, atol=1e-5, rtol=0)
    # the normalisation is folded, not skipped: the network really holds ImageNorm's statistics
    assert not torch.allclose(model.body[0].weight, torch.from_numpy(convs[0][0]).permute(3, 2, 0, 1))


def test_v5_file_imports_the_same_network(authors_dncnn, tmp_path):
    """The authors' older models are MATLAB v5 files (scipy): a struct whose layers field is a cell of structs."""
    path, convs = authors_dncnn
    layers = layer_list(convs)
    cell = np.empty((1, len(layers)), dtype=object)
    for index, layer in enumerate(layers):
        weights = layer.get("weights")
        if weights is not None:
            layer = {**layer, "weights": np.empty((1, 2), dtype=object)}
            layer["weights"][0, 0], layer["weights"][0, 1] = weights
        cell[0, index] = layer
    v5 = tmp_path / "color_sigma=25.mat"
    scipy.io.savemat(v5, {"net": {"layers": cell}}, format="5")
    image = noisy_photo(41, 43)
    np.testing.assert_allclose(run(import_dncnn_matconvnet(v5), image), run(import_dncnn_matconvnet(path), image), atol=1e-6)


def test_cli_writes_a_checkpoint_every_command_loads(authors_dncnn, tmp_path, capsys):
    path, convs = authors_dncnn
    out = tmp_path / "cdncnn_b.pt"
    assert main(["import-weights", "dncnn-matconvnet", str(path), "-o", str(out)]) == 0
    loaded = load_model(out, expected_name="dncnn")
    image = noisy_photo()
    np.testing.assert_allclose(run(loaded, image), numpy_dncnn(convs, image), atol=1e-5, rtol=0)
    state = torch.load(out, weights_only=True)
    assert state["imported_from"]["format"] == "dncnn-matconvnet" and len(state["imported_from"]["sha256"]) == 64
    assert all(value.dtype == torch.float32 for value in state["model"].values())
    assert main(["import-weights", "dncnn-matconvnet", str(path), "-o", str(out)]) == 2  # no silent overwrite
    assert "exists (add --overwrite" in capsys.readouterr().err


def refused(tmp_path: Path, layers: list[dict] | None = None, data: bytes | None = None, numeric=None) -> str:
    """The one-line error the CLI prints for a bad file (exit 2, nothing written)."""
    path = tmp_path / "bad.mat"
    if data is not None:
        path.write_bytes(data)
    else:
        write_matconvnet_v73(path, layers, numeric)
    out = tmp_path / "out.pt"
    with pytest.raises(WeightsImportError) as error:
        import_dncnn_matconvnet(path)
    assert main(["import-weights", "dncnn-matconvnet", str(path), "-o", str(out)]) == 2 and not out.exists()
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_corrupt_and_foreign_files_are_refused_in_one_line(authors_dncnn, tmp_path):
    whole = authors_dncnn[0].read_bytes()
    assert "not a readable MATLAB file" in refused(tmp_path, data=whole[: len(whole) // 2])  # truncated download
    assert "not a readable MATLAB file" in refused(tmp_path, data=b"<html>quota exceeded</html>")
    with h5py.File(tmp_path / "keras.h5", "w") as file:
        file.create_dataset("model_weights", data=np.zeros(3))
    assert "no MatConvNet 'net.layers'" in refused(tmp_path, data=(tmp_path / "keras.h5").read_bytes())


def test_other_networks_and_wrong_shapes_are_refused_in_one_line(tmp_path):
    convs = random_dncnn(depth=5, channels=8)
    with_bn = layer_list(convs)
    with_bn.insert(3, {"type": "bnorm", "name": "layer3b", "weights": [np.ones((8, 1), np.float32)] * 2})
    assert "a 'bnorm' layer at position 4" in refused(tmp_path, with_bn)
    assert "the last a 'relu'" in refused(tmp_path, layer_list(convs)[:-1])
    grey = [(np.zeros((3, 3, 1, 8), np.float32), convs[0][1])] + convs[1:]
    assert "convolution 1 maps 1 -> 8 channels, expected 3 -> 8" in refused(tmp_path, layer_list(grey))
    five = [convs[0], (np.zeros((5, 5, 8, 8), np.float32), convs[1][1])] + convs[2:]
    assert "expected 3x3 filters" in refused(tmp_path, layer_list(five))
    strided = layer_list(convs)
    strided[2]["stride"] = np.full((1, 1), 2.0)
    assert "layer 3 (layer3): expected stride 1, found [2.0]" in refused(tmp_path, strided)


# ----------------------------------------------------------------------------- EDSR, EDSR-PyTorch

DIV2K_MEAN = torch.tensor([0.4488, 0.4371, 0.4040])


def official_edsr_state(blocks: int = 16, features: int = 64, scale: int = 2, mean_shift: bool = True) -> dict:
    """A state dict with EDSR-PyTorch's key names and shapes (src/model/edsr.py, common.py), random weights."""
    generator = torch.Generator().manual_seed(0)
    conv = lambda cin, cout: (torch.randn(cout, cin, 3, 3, generator=generator) * (0.5 / (9 * cin)) ** 0.5,  # noqa: E731
                              torch.randn(cout, generator=generator) * 0.01)
    state = {}

    def put(name, cin, cout):
        state[f"{name}.weight"], state[f"{name}.bias"] = conv(cin, cout)

    if mean_shift:  # MeanShift(rgb_range=255, sign=-1 / +1): 1x1 convs, identity weight, bias -/+ 255 * mean
        for name, sign in (("sub_mean", -1), ("add_mean", 1)):
            state[f"{name}.weight"], state[f"{name}.bias"] = torch.eye(3).view(3, 3, 1, 1), sign * 255 * DIV2K_MEAN
    put("head.0", 3, features)
    for block in range(blocks):
        put(f"body.{block}.body.0", features, features)
        put(f"body.{block}.body.2", features, features)
    put(f"body.{blocks}", features, features)
    for stage in range({2: 1, 4: 2}[scale]):
        put(f"tail.0.{2 * stage}", features, 4 * features)
    put("tail.1", features, 3)
    return state


def reference_edsr(state: dict, images: torch.Tensor, blocks: int = 16, scale: int = 2) -> torch.Tensor:
    """EDSR-PyTorch's forward in float64: x * 255 -> sub_mean -> head -> body + skip -> upsampler -> tail -> add_mean."""
    weights = {key: value.double() for key, value in state.items()}
    conv = lambda x, name, pad=1: F.conv2d(x, weights[f"{name}.weight"], weights[f"{name}.bias"], padding=pad)  # noqa: E731
    x = conv(images.double() * 255, "sub_mean", 0) if "sub_mean.weight" in weights else images.double() * 255 - 255 * DIV2K_MEAN.double().view(1, 3, 1, 1)
    x = conv(x, "head.0")
    res = x
    for block in range(blocks):
        res = res + conv(F.relu(conv(res, f"body.{block}.body.0")), f"body.{block}.body.2")
    res = conv(res, f"body.{blocks}") + x
    for stage in range({2: 1, 4: 2}[scale]):
        res = F.pixel_shuffle(conv(res, f"tail.0.{2 * stage}"), 2)
    out = conv(res, "tail.1")
    out = conv(out, "add_mean", 0) if "add_mean.weight" in weights else out + 255 * DIV2K_MEAN.double().view(1, 3, 1, 1)
    return out / 255


@pytest.mark.parametrize("mean_shift", [True, False])
def test_imported_edsr_baseline_x2_matches_the_published_forward_pass(tmp_path, mean_shift):
    state = official_edsr_state(mean_shift=mean_shift)
    path = tmp_path / "edsr_baseline_x2-1bc95232.pt"
    torch.save(state, path)
    model = import_edsr_pytorch(path)
    assert isinstance(model, EDSR) and not model.upsample_skip
    assert model.arch["kwargs"] | {"pad_colour": None} == EDSR(upsample_skip=False).arch["kwargs"]
    images = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        torch.testing.assert_close(model(images).double(), reference_edsr(state, images), atol=1e-5, rtol=0)


def test_edsr_x4_and_the_cli(tmp_path):
    state = official_edsr_state(blocks=2, features=8, scale=4)
    torch.save(state, tmp_path / "edsr_x4.pt")
    assert main(["import-weights", "edsr-pytorch", str(tmp_path / "edsr_x4.pt"), "-o", str(tmp_path / "edsr.pt")]) == 0
    model = load_model(tmp_path / "edsr.pt", expected_name="edsr")
    images = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(model(images).double(), reference_edsr(state, images, blocks=2, scale=4), atol=1e-5, rtol=0)


def edsr_refused(tmp_path: Path, state) -> str:
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(WeightsImportError) as error:
        import_edsr_pytorch(path)
    assert main(["import-weights", "edsr-pytorch", str(path), "-o", str(tmp_path / "out.pt")]) == 2
    assert "\n" not in str(error.value) and str(error.value).startswith(str(path))
    return str(error.value)


def test_edsr_importer_refuses_other_files_in_one_line(tmp_path):
    state = official_edsr_state(blocks=2, features=8)
    assert "not an EDSR-PyTorch state dict" in edsr_refused(tmp_path, {"conv1.weight": torch.zeros(1)})
    assert "unexpected pre_process.0.weight" in edsr_refused(tmp_path, {**state, "pre_process.0.weight": torch.zeros(1)})
    assert "body.1.body.0.weight is [8, 8, 5, 5], the network needs [8, 8, 3, 3]" in edsr_refused(
        tmp_path, {**state, "body.1.body.0.weight": torch.zeros(8, 8, 5, 5)})
    assert "not a state dict" in edsr_refused(tmp_path, [torch.zeros(1)])
    torch.save(state, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsImportError, match="not a readable PyTorch file"):
        import_edsr_pytorch(tmp_path / "truncated.pt")


# ----------------------------------------------------------------------------- issue 28: hostile files


def first_filters_stored(make):
    """A ``numeric`` hook for ``write_matconvnet_v73``: ``make(parent, name, data)`` creates the first 4-D array."""
    pending = [True]

    def numeric(parent, name, data):
        if data.ndim == 4 and pending.pop() if pending else False:
            return make(parent, name, data)
        return parent.create_dataset(name, data=data)

    return numeric


def test_external_storage_is_refused_so_no_other_file_becomes_weights(tmp_path):
    convs = random_dncnn(depth=3, channels=4)
    secret = tmp_path / "id_rsa"
    secret.write_bytes(np.random.default_rng(1).bytes(convs[0][0].size * 4))  # exactly the first filters' bytes
    external = first_filters_stored(lambda parent, name, data: parent.create_dataset(
        name, shape=data.shape, dtype=np.float32, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]))
    message = refused(tmp_path, layer_list(convs), numeric=external)
    assert "keeps its data in external storage" in message and "#refs#" in message


def test_virtual_datasets_are_refused(tmp_path):
    convs = random_dncnn(depth=3, channels=4)

    def virtual(parent, name, data):
        with h5py.File(tmp_path / "source.h5", "w") as source:
            source["filters"] = data
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        layout[...] = h5py.VirtualSource(str(tmp_path / "source.h5"), "filters", shape=data.shape)
        return parent.create_virtual_dataset(name, layout)

    assert "keeps its data in a virtual or unknown layout" in refused(tmp_path, layer_list(convs), numeric=first_filters_stored(virtual))


def test_soft_and_external_links_are_refused(tmp_path):
    layers = layer_list(random_dncnn(depth=3, channels=4))
    other = write_matconvnet_v73(tmp_path / "other.mat", layers)
    with h5py.File(tmp_path / "linked.mat", "w") as file:
        file["net"] = h5py.ExternalLink(str(other), "/net")
    assert "/net is a ExternalLink; only plain HDF5 members are read" in refused(
        tmp_path, data=(tmp_path / "linked.mat").read_bytes())
    soft = write_matconvnet_v73(tmp_path / "soft.mat", layers)
    with h5py.File(soft, "r+") as file:
        file.move("net/layers", "net/real")
        file["net/layers"] = h5py.SoftLink("/net/real")
    assert "/net/layers is a SoftLink" in refused(tmp_path, data=soft.read_bytes())


def test_a_scalar_weights_value_is_refused_in_one_line(tmp_path):
    layers = layer_list(random_dncnn(depth=3, channels=4))
    layers[0]["weights"] = np.float64(3.0)
    assert "layer 1 (layer1): expected 'weights' to be a cell of filters and biases, found a () array" in refused(tmp_path, layers)


def test_a_compressed_v5_variable_is_measured_before_it_is_inflated(tmp_path, monkeypatch):
    import helpers.import_weights as import_module

    monkeypatch.setattr(import_module, "MAX_TOTAL_ELEMENTS", 2**14)  # 128 KiB, so that a 1 MiB variable exceeds it
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, {"net": {"layers": np.zeros(2**17)}}, format="5", do_compression=True)
    assert path.stat().st_size < 2**14
    inflated = []
    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: inflated.append(a) or {})
    assert "its compressed variables inflate to more than 131,072 bytes" in refused(tmp_path, data=path.read_bytes())
    assert not inflated  # refused from the measure, before scipy inflated anything


def dataless_arrays(parent, name, data):
    """Every 4-D array declared at the per-array limit, with no data stored (HDF5 reads its fill value): 512 MiB as
    float64 each in a file of a few kB."""
    if data.ndim == 4:
        return parent.create_dataset(name, shape=(2**26,), dtype=np.float64)
    return parent.create_dataset(name, data=data)


def dataless_total(parent, name, data):
    """Every 4-D array declared at half the per-array bound, with no data stored: over the total bound by the fifth."""
    if data.ndim == 4:
        return parent.create_dataset(name, shape=(2**23,), dtype=np.float64)
    return parent.create_dataset(name, data=data)


def declared_edsr_state(features: int, blocks: int, stretched: bool = False) -> dict:
    """EDSR-PyTorch's keys with the shapes of ``features`` features in a few bytes: every tensor empty (its input
    channels 0) or, ``stretched``, one stored zero seen through stride 0."""
    def shape(value: torch.Tensor) -> list[int]:
        sizes = [features if size == 8 else 4 * features if size == 32 else size for size in value.shape]
        return sizes if stretched or len(sizes) < 2 or key.startswith(("sub_mean", "add_mean")) else [sizes[0], 0, *sizes[2:]]

    state = {}
    for key, value in official_edsr_state(blocks=blocks, features=8).items():
        state[key] = torch.zeros(1).expand(*shape(value)) if stretched else torch.zeros(shape(value))
    return state


def write_hostile(tmp_path: Path, case: str) -> Path:
    if case == "matconvnet-dataless-arrays":  # 3 x 512 MiB declared in a few kB
        return write_matconvnet_v73(tmp_path / "bad.mat", layer_list(random_dncnn(depth=3, channels=4)), dataless_arrays)
    if case == "matconvnet-dataless-total":  # 5 x 8 M values, each within the per-array bound, 40 M together
        return write_matconvnet_v73(tmp_path / "bad.mat", layer_list(random_dncnn(depth=5, channels=4)), dataless_total)
    if case == "edsr-deflated-tensor":
        return zip_bomb_torch_file(tmp_path / "bad.pt", official_edsr_state(blocks=1, features=8), 3 * ONE_GIB // 2,
                                   key="sub_mean.extra")  # beside the MeanShift, which the shape check leaves alone
    features, blocks, stretched = {"edsr-50000-features": (50_000, 1, False), "edsr-4096-features": (4096, 16, False),
                                   "edsr-stretched-views": (4096, 16, True)}[case]
    torch.save(declared_edsr_state(features, blocks, stretched), tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


HOSTILE = {
    "matconvnet-dataless-arrays": ("dncnn-matconvnet", "holds 67,108,864 values, more than any layer"),
    "matconvnet-dataless-total": ("dncnn-matconvnet", "its arrays hold more than 33,554,432 values together"),
    "edsr-deflated-tensor": ("edsr-pytorch", "its tensors inflate to 1.5 GiB, more than the network it declares needs"),
    "edsr-50000-features": ("edsr-pytorch", "channels=50000 is outside 0..4096"),
    "edsr-4096-features": ("edsr-pytorch", "head.weight is [4096, 0, 3, 3], the network needs [4096, 3, 3, 3]"),
    "edsr-stretched-views": ("edsr-pytorch", "larger than its stored data (a stretched view)"),
}


@pytest.fixture(scope="module")
def normal_import_peaks(tmp_path_factory) -> dict[str, int]:
    """import-weights' peak memory on small genuine files of each kind: the normal peak the hostile ones are held to."""
    folder = tmp_path_factory.mktemp("genuine")
    sources = {"dncnn-matconvnet": write_matconvnet_v73(folder / "ok.mat", layer_list(random_dncnn(depth=3, channels=4)))}
    torch.save(official_edsr_state(blocks=1, features=8), folder / "ok.pt")
    sources["edsr-pytorch"] = folder / "ok.pt"
    peaks = {}
    for kind, source in sources.items():
        code, _, peaks[kind] = run_measured(["import-weights", kind, str(source), "-o", str(folder / f"{kind}.pt")])
        assert code == 0
    return peaks


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_small_hostile_files_are_refused_within_bounded_memory(tmp_path, normal_import_peaks, case):
    kind, expected = HOSTILE[case]
    source = write_hostile(tmp_path, case)
    assert source.stat().st_size < 8 * 2**20
    code, stderr, peak = run_measured(["import-weights", kind, str(source), "-o", str(tmp_path / "out.pt")])
    assert code == 2 and expected in stderr and len(stderr.strip().splitlines()) == 1, stderr[-500:]
    assert not (tmp_path / "out.pt").exists()
    assert peak < normal_import_peaks[kind] + ONE_GIB


# ----------------------------------------------------------------------------- the reproduction script


def test_reproduce_prints_both_protocols_beside_the_published_figures(tmp_path, capsys):
    from bench import reproduce
    from helpers.io import uint8_image, write_image

    write_image(tmp_path / "CBSD68" / "a.png", uint8_image(np.clip(noisy_photo(48, 56, sigma=0), 0, 1)))
    weights = write_matconvnet_v73(tmp_path / "GD_Color_Blind.mat", layer_list(random_dncnn(depth=3, channels=4)))
    arguments = ["--data", str(tmp_path / "CBSD68"), "--sigmas", "25", "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert reproduce.main(["--weights", str(weights), *arguments]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| 25    | 31.23" in report and "CDnCNN-B, paper protocol" in report and "CDnCNN-B, clipped protocol" in report
    assert "paper = float noise, not clipped" in capsys.readouterr().out
    assert reproduce.main(["--weights", str(weights), *arguments, "--protocols", "clipped"]) == 0
    assert "CDnCNN-B, paper protocol" not in (tmp_path / "out" / "report.md").read_text()
    assert reproduce.main(["--weights", str(tmp_path / "missing.mat"), *arguments]) == 2
    assert "model/GD_Color_Blind.mat in https://github.com/cszn/DnCNN" in capsys.readouterr().err
