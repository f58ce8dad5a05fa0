"""Published weights as this project's networks: the DnCNN authors' MatConvNet models, EDSR-PyTorch's state dicts.

``python -m helpers import-weights dncnn-matconvnet GD_Color_Blind.mat -o cdncnn_b.pt`` writes an
ordinary checkpoint (``helpers.checkpoint``) that every command loads like any other. The authors'
normalisation is folded exactly into ours (``helpers.models.ImageNorm``): into the first and last
convolutions, with ``pad_colour`` set to what their first convolution saw beyond the image border.

- ``dncnn-matconvnet``: a MatConvNet SimpleNN ``net`` whose layers are conv (3x3, stride 1, pad 1,
  with bias) and relu only, RGB in and out: the authors' released colour models (batch norm already
  folded into the convolutions), MATLAB v7.3 (HDF5, read with h5py) or v5 (read with scipy). Their
  network takes RGB in [0, 1] without normalisation and predicts the noise: output = input - net(input).
- ``edsr-pytorch``: a state dict of EDSR-PyTorch's ``EDSR`` (e.g. ``edsr_baseline_x2-1bc95232.pt``),
  which works on the 0-255 scale with a "MeanShift" (DIV2K mean) before the head and after the tail;
  it becomes ``EDSR(upsample_skip=False)``. Verified against the file's published structure only: no
  copy of the real file was at hand.

Bad files are refused with one ``WeightsImportError`` line naming the file and the problem. A file is
data: HDF5 links, external or virtual storage (which would copy other files into the weights) are refused,
and what a file may inflate to is bounded before it is inflated (``MAX_TOTAL_ELEMENTS`` values for a
MATLAB file; for a PyTorch file, what the EDSR its shapes declare needs: ``helpers.checkpoint.read_torch_file``).
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import scipy.io
import torch
from torch import nn

from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, check_fit, export_weights, read_torch_file
from .models import EDSR, IMAGENET_MEAN, IMAGENET_STD, DnCNN

__all__ = [
    "WeightsImportError",
    "DNCNN_SOURCE",
    "read_matconvnet",
    "import_dncnn_matconvnet",
    "import_edsr_pytorch",
    "IMPORTERS",
    "import_weights",
]

MAX_FILE_BYTES = 1 << 30  # the published files are 3 MB (DnCNN) to 160 MB (EDSR large)
MAX_ARRAY_ELEMENTS = 1 << 24  # per weight array (128 MiB as float64), checked before an HDF5 array is read
MAX_TOTAL_ELEMENTS = 1 << 25  # all arrays of a MATLAB file together (the published DnCNN-3, the largest, has 0.67 M)
# HDF5 storage kept inside the file: contiguous, chunked, or compact (in the object header, at most 64 KiB)
INTERNAL_LAYOUTS = {h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked", h5py.h5d.COMPACT: "compact"}
V5_HEADER_BYTES, V5_COMPRESSED = 128, 15  # a MATLAB v5 file's header; the tag type of its zlib-compressed elements
MAX_LAYERS = 10_000
LAYER_FIELDS = ("type", "name", "weights", "pad", "stride", "dilate", "leak")  # what the importers read of a layer
EDSR_RGB_RANGE = 255.0  # EDSR-PyTorch's --rgb_range of the published models
EDSR_DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # its MeanShift's mean, used when the state dict lacks sub_mean/add_mean
DNCNN_SOURCE = "the DnCNN authors publish it as model/GD_Color_Blind.mat in https://github.com/cszn/DnCNN"


class WeightsImportError(ValueError):
    """A file that cannot be imported (unreadable, truncated, another network, wrong shapes): one line."""


def _refuse(path: Path, problem: str) -> WeightsImportError:
    return WeightsImportError(f"{path}: {problem}")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise _refuse(path, "not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _refuse(path, f"{size:,} bytes is more than any published model ({MAX_FILE_BYTES:,} at most)")


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


# ----------------------------------------------------------------------------- MatConvNet files


def read_matconvnet(path: str | Path) -> list[dict[str, Any]]:
    """The layers of a MatConvNet SimpleNN file (``net.layers``), each a dict of the ``LAYER_FIELDS`` it has:
    ``type``, ``name``, ``weights`` (arrays in MATLAB's axis order, e.g. (kH, kW, in, out) filters),
    ``pad``, ``stride``, ``dilate``, ``leak``. MATLAB v7.3 files are HDF5 (h5py; it returns every array
    with its axes reversed), older ones v5 (scipy)."""
    path = Path(path)
    _check_file(path)
    try:
        layers = _read_v73(path) if h5py.is_hdf5(path) else _read_v5(path)
    except WeightsImportError:
        raise
    except Exception as error:  # h5py/scipy report truncation and garbage in many ways
        raise _refuse(path, f"not a readable MATLAB file (truncated or another format: {_first_line(error)})") from None
    if not layers:
        raise _refuse(path, "net.layers is empty")
    return layers


def _read_v73(path: Path) -> list[dict[str, Any]]:
    """``net.layers`` of a v7.3 file: a cell array of object references to structs of char/numeric datasets."""
    with h5py.File(path, "r") as file:
        reader = _V73Reader(path)
        net = reader.member(file, "net")
        if not isinstance(net, h5py.Group) or not isinstance(reader.member(net, "layers"), h5py.Dataset):
            raise _refuse(path, f"no MatConvNet 'net.layers' (variables: {', '.join(k for k in file if k != '#refs#')})")
        references = reader.member(net, "layers")
        reader.check_storage(references)
        if references.dtype != h5py.ref_dtype or references.size > MAX_LAYERS:
            raise _refuse(path, "net.layers is not a cell array of layers (a DagNN network? only SimpleNN is read)")
        return [reader.layer(file[reference]) for reference in references[()].ravel()]


class _V73Reader:
    """Reads MATLAB values from an HDF5 file that is data, not a map of the disk: only hard links are followed,
    only storage inside the file is read, and the values of all arrays together are bounded before reading."""

    def __init__(self, path: Path) -> None:
        self.path, self.values = path, 0

    def member(self, group: Any, name: str) -> Any:
        """``group[name]`` when it is a hard link (a soft or external link may name another object or file)."""
        link = group.get(name, getlink=True)
        if link is not None and not isinstance(link, h5py.HardLink):
            raise _refuse(self.path, f"{group.name.rstrip('/')}/{name} is a {type(link).__name__}; only plain "
                                     "HDF5 members are read (a link may reach into other files)")
        return group.get(name)

    def check_storage(self, dataset: Any) -> None:
        """Refuse datasets whose data lies outside the file (external files, virtual datasets) or in another layout."""
        plist = dataset.id.get_create_plist()
        layout = plist.get_layout()
        if plist.get_external_count() or layout not in INTERNAL_LAYOUTS:
            kind = "external storage" if plist.get_external_count() else "a virtual or unknown layout"
            raise _refuse(self.path, f"{dataset.name} keeps its data in {kind}; only data stored inside the file is "
                                     "read (external storage would copy another file into the weights)")

    def value(self, item: Any) -> Any:
        """A char dataset as str; a cell of references as a list of values; a numeric one as an array in MATLAB order."""
        kind = item.attrs.get("MATLAB_class", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if not isinstance(item, h5py.Dataset):
            raise _refuse(self.path, f"{item.name}: expected an array, found a {kind or 'group'}")
        self.check_storage(item)
        if item.size > MAX_ARRAY_ELEMENTS:
            raise _refuse(self.path, f"{item.name} holds {item.size:,} values, more than any layer of a published model")
        self.values += item.size
        if self.values > MAX_TOTAL_ELEMENTS:
            raise _refuse(self.path, f"its arrays hold more than {MAX_TOTAL_ELEMENTS:,} values together, more than any "
                                     "published model; refused before reading them")
        if item.attrs.get("MATLAB_empty", 0):  # an empty value is stored as its dimensions
            return {"char": "", "cell": []}.get(kind, np.zeros(0))
        if kind == "char":
            return "".join(map(chr, item[()].ravel()))
        if kind == "cell":
            return [self.value(item.file[reference]) for reference in item[()].ravel()]
        return np.asarray(item[()]).T  # h5py reads MATLAB's column-major arrays with their axes reversed

    def layer(self, group: Any) -> dict[str, Any]:
        if not isinstance(group, h5py.Group):
            raise _refuse(self.path, f"{group.name}: a layer is not a struct")
        return {key: self.value(self.member(group, key)) for key in LAYER_FIELDS if key in group}


def _read_v5(path: Path) -> list[dict[str, Any]]:
    """``net.layers`` of a v5 file (scipy.io.loadmat, without squeezing so shapes stay MATLAB's), once what its
    compressed elements inflate to is known to be bounded."""
    if _v5_inflated_bytes(path, 8 * MAX_TOTAL_ELEMENTS) > 8 * MAX_TOTAL_ELEMENTS:
        raise _refuse(path, f"its compressed variables inflate to more than {8 * MAX_TOTAL_ELEMENTS:,} bytes, more than "
                            "any published model; refused before inflating them")
    contents = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=False, variable_names=["net"])
    if "net" not in contents:
        raise _refuse(path, "no MatConvNet 'net' variable")
    net = contents["net"].ravel()[0]
    if not hasattr(net, "layers"):
        raise _refuse(path, "no MatConvNet 'net.layers'")
    return [_v5_layer(path, cell) for cell in np.asarray(net.layers).ravel()]


def _v5_inflated_bytes(path: Path, limit: int) -> int:
    """What a v5 file's zlib-compressed elements inflate to (at least ``limit + 1`` once above it), measured in
    bounded chunks that are not kept. Uncompressed elements are bounded by the file's size."""
    total = 0
    with open(path, "rb") as handle:
        header = handle.read(V5_HEADER_BYTES)
        order = "<u4" if header[126:128] == b"IM" else ">u4"
        while total <= limit and len(tag := handle.read(8)) == 8:
            kind, size = (int(value) for value in np.frombuffer(tag, dtype=order))
            if kind != V5_COMPRESSED:
                handle.seek(size + (-size) % 8, 1)
                continue
            inflater, remaining = zlib.decompressobj(), size
            while remaining and total <= limit and (data := handle.read(min(remaining, 1 << 16))):
                remaining -= len(data)
                while data and total <= limit and not inflater.eof:
                    total += len(inflater.decompress(data, 1 << 20))
                    data = inflater.unconsumed_tail
            handle.seek(remaining, 1)
    return total


def _v5_value(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return "".join(value.ravel())
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [np.asarray(item) for item in value.ravel()]
    return np.asarray(value)


def _v5_layer(path: Path, cell: Any) -> dict[str, Any]:
    layer = np.asarray(cell).ravel()[0] if isinstance(cell, np.ndarray) else cell
    if not hasattr(layer, "_fieldnames"):
        raise _refuse(path, "a layer is not a struct")
    return {key: _v5_value(getattr(layer, key)) for key in LAYER_FIELDS if key in layer._fieldnames}


# ----------------------------------------------------------------------------- DnCNN


def _conv_weights(path: Path, index: int, layer: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A 3x3 / stride 1 / pad 1 conv layer's (filters in torch order (out, in, kH, kW), bias), or a refusal."""
    where = f"layer {index + 1} ({layer.get('name', '?')})"
    weights = layer.get("weights", [])
    if not isinstance(weights, list) or len(weights) != 2:
        found = f"{len(weights)} arrays" if isinstance(weights, list) else f"a {np.asarray(weights).shape} array, not a cell"
        raise _refuse(path, f"{where}: expected 'weights' to be a cell of filters and biases, found {found}")
    try:
        filters, bias = (np.asarray(array, dtype=np.float64) for array in weights)
    except (TypeError, ValueError):
        raise _refuse(path, f"{where}: its filters and biases are not numeric arrays") from None
    filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops trailing singleton axes
    if filters.ndim != 4 or filters.shape[:2] != (3, 3) or bias.size != filters.shape[3]:
        raise _refuse(path, f"{where}: expected 3x3 filters with one bias per output, found {filters.shape} and {bias.size} biases")
    for option, expected in (("pad", 1), ("stride", 1), ("dilate", 1)):
        if option in layer and np.any(np.asarray(layer[option]) != expected):
            raise _refuse(path, f"{where}: expected {option} {expected}, found {np.asarray(layer[option]).ravel().tolist()}")
    return filters.transpose(3, 2, 0, 1), bias.ravel()


def import_dncnn_matconvnet(path: str | Path) -> DnCNN:
    """The DnCNN authors' MatConvNet model (conv/relu layers, RGB) as ``DnCNN(batch_norm=False)``, normalisation folded.

    Theirs: n(x) predicted noise of x in [0, 1], zero padding; output x - n(x). Ours: output
    x - s * body((x - m) / s) with the ImageNet mean m and std s. The first convolution absorbs the
    normalisation (filters times s per input channel, bias plus the filters applied to m) and pads with
    black, the zero of their input; the last one divides by s per output channel.
    """
    path = Path(path)
    layers = read_matconvnet(path)
    types = [str(layer.get("type", "?")) for layer in layers]
    expected = ["conv", "relu"] * (len(layers) // 2) + ["conv"]
    if types != expected or len(layers) < 5:
        odd = next((i for i, (a, b) in enumerate(zip(types, expected)) if a != b), None)
        found = f"a '{types[odd]}' layer at position {odd + 1}" if odd is not None else f"{len(layers)} layers, the last a '{types[-1]}'"
        raise _refuse(path, f"not a DnCNN (conv and relu layers alternating, a conv last, batch norm folded): found {found}")
    for index, layer in enumerate(layers):
        if layer["type"] == "relu" and np.any(np.asarray(layer.get("leak", 0)) != 0):
            raise _refuse(path, f"layer {index + 1}: a leaky ReLU; DnCNN's are plain")
    convs = [_conv_weights(path, index, layer) for index, layer in enumerate(layers) if layer["type"] == "conv"]
    channels = convs[0][0].shape[0]
    shapes = [filters.shape[:2] for filters, _ in convs]
    wanted = [(channels, 3)] + [(channels, channels)] * (len(convs) - 2) + [(3, channels)]
    if shapes != wanted:
        bad = next(i for i, (a, b) in enumerate(zip(shapes, wanted)) if a != b)
        raise _refuse(path, f"convolution {bad + 1} maps {shapes[bad][1]} -> {shapes[bad][0]} channels, expected "
                            f"{wanted[bad][1]} -> {wanted[bad][0]} (an RGB DnCNN of {channels} features)")
    model = DnCNN(depth=len(convs), channels=channels, batch_norm=False, pad_colour=(0.0, 0.0, 0.0))
    mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    (first, first_bias), (last, last_bias) = convs[0], convs[-1]
    convs[0] = (first * std[None, :, None, None], first_bias + np.einsum("oihw,i->o", first, mean))
    convs[-1] = (last / std[:, None, None, None], last_bias / std)
    targets = [module for module in model.body if isinstance(module, nn.Conv2d)]
    for module, (filters, bias) in zip(targets, convs):
        module.weight.data.copy_(torch.from_numpy(filters))
        module.bias.data.copy_(torch.from_numpy(bias))
    return model.eval()


# ----------------------------------------------------------------------------- EDSR


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's state dict, its size bounded first by the EDSR its shapes declare (``read_torch_file``). Files in
    PyTorch's legacy format (before 1.6, like the published EDSR files) are not compressed: the file-size limit
    bounds them, and ``_edsr_layout`` checks their shapes before anything is built."""
    _check_file(path)
    if not zipfile.is_zipfile(path):
        try:
            return _state_dict(path, torch.load(path, map_location="cpu", weights_only=True))
        except WeightsImportError:
            raise
        except Exception as error:
            raise _refuse(path, f"not a readable PyTorch file (truncated or another format: {_first_line(error)})") from None
    try:
        return read_torch_file(path, lambda structure: _edsr_bytes(path, _state_dict(path, structure)))
    except CheckpointError as error:
        raise WeightsImportError(str(error)) from None


def _state_dict(path: Path, state: Any) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise _refuse(path, "already a checkpoint of this project: load it directly")
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise _refuse(path, "not a state dict (a dict of tensors)")
    for key, value in state.items():
        if value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise _refuse(path, f"{key}: a tensor of shape {list(value.shape)} larger than its stored data (a stretched view)")
    return state


def _edsr_bytes(path: Path, state: dict[str, torch.Tensor]) -> int:
    """The float32 bytes of the EDSR a state dict's shapes declare, once its layout is bounded and every shape fits."""
    _edsr_layout(path, state)
    return 4 * (sum(tensor.numel() for tensor in _renamed(state).values()) + 2 * (9 + 3))  # the network, two MeanShifts


def _edsr_layout(path: Path, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Blocks, features, scale and residual scaling of an EDSR-PyTorch state dict, read from its keys and shapes.

    The layout is checked as a checkpoint's would be (``check_fit``: bounded arguments and size, every shape
    fitting) on the meta device, so a hostile shape fails here in one line instead of building a huge network.
    """
    head = state.get("head.0.weight")
    if head is None:
        raise _refuse(path, "not an EDSR-PyTorch state dict (no 'head.0.weight')")
    if head.ndim != 4 or head.shape[0] < 1:
        raise _refuse(path, f"head.0.weight has shape {list(head.shape)}, not the (features, 3, 3, 3) of a convolution")
    channels = head.shape[0]
    num_blocks = sum(1 for key in state if re.fullmatch(r"body\.\d+\.body\.0\.weight", key))
    upsample = [state[key] for key in sorted(k for k in state if re.fullmatch(r"tail\.0\.\d+\.weight", k))]
    factors = [weight.shape[0] // channels if weight.ndim else 0 for weight in upsample]
    scale = {(4,): 2, (9,): 3, (4, 4): 4, (4, 4, 4): 8}.get(tuple(factors))
    if scale is None:
        raise _refuse(path, f"not an EDSR upsampler: its convolutions give {factors} x {channels} features")
    # The residual scaling is no weight; the published models use 0.1 for the large EDSR (32 blocks, 256 features).
    res_scale = 0.1 if (num_blocks, channels) == (32, 256) else 1.0
    layout = {"scale": scale, "num_blocks": num_blocks, "channels": channels, "res_scale": res_scale}
    try:
        check_fit(path, {"name": "edsr", "kwargs": {**layout, "upsample_skip": False}}, _renamed(state))
    except CheckpointError as error:
        raise WeightsImportError(str(error).replace("weights do not fit", "not EDSR-PyTorch's EDSR: its weights do not fit")) from None
    return layout


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EDSR-PyTorch's names as this project's EDSR's (``head.0.`` -> ``head.``), without the MeanShift layers."""
    return {("head." + key[len("head.0."):] if key.startswith("head.0.") else key): value
            for key, value in state.items() if not key.startswith(("sub_mean.", "add_mean."))}


def _mean_shift(path: Path, state: dict[str, torch.Tensor], name: str, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A MeanShift 1x1 conv as (3x3 matrix, bias) in float64; EDSR-PyTorch's defaults when the keys are absent."""
    if f"{name}.weight" in state:
        weight, bias = state[f"{name}.weight"], state.get(f"{name}.bias", torch.zeros(0))
        if weight.numel() != 9 or bias.numel() != 3:
            raise _refuse(path, f"{name} has {weight.numel()} weights and {bias.numel()} biases, not the 3x3 and 3 of "
                                "EDSR's MeanShift")
        return weight.double().reshape(3, 3), bias.double().reshape(3)
    return torch.eye(3, dtype=torch.float64), sign * EDSR_RGB_RANGE * torch.tensor(EDSR_DIV2K_MEAN, dtype=torch.float64)


def import_edsr_pytorch(path: str | Path) -> EDSR:
    """An EDSR-PyTorch state dict as ``EDSR(upsample_skip=False)`` with their MeanShift folded exactly.

    Theirs, on x255 = 255 x: head(A x255 + a) ... tail, then (A2 t + a2) / 255 with the MeanShifts
    (A, a) = (I, -255 mean) and (A2, a2) = (I, +255 mean). Ours: head((x - m) / s) ... tail, then
    t s + m. The head's filters and bias absorb the first affine map and the head pads with the colour
    their MeanShift sends to zero (the DIV2K mean); the tail's absorb the second.
    """
    path = Path(path)
    state = _load_state_dict(path)
    (shift, offset), (shift_out, offset_out) = _mean_shift(path, state, "sub_mean", -1.0), _mean_shift(path, state, "add_mean", 1.0)
    try:
        pad_colour = torch.linalg.solve(shift, -offset) / EDSR_RGB_RANGE  # the input their head sees as zero
    except RuntimeError:
        raise _refuse(path, "sub_mean is not invertible: not EDSR's MeanShift") from None
    model = EDSR(**_edsr_layout(path, state), upsample_skip=False, pad_colour=tuple(pad_colour.tolist()))
    renamed = {key: value.double() for key, value in _renamed(state).items()}

    mean, std = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD, dtype=torch.float64)
    head, head_bias = renamed["head.weight"], renamed["head.bias"]
    renamed["head.weight"] = torch.einsum("ojhw,jc,c->ochw", head, EDSR_RGB_RANGE * shift, std)
    renamed["head.bias"] = head_bias + torch.einsum("ojhw,j->o", head, EDSR_RGB_RANGE * shift @ mean + offset)
    tail, tail_bias = renamed["tail.1.weight"], renamed["tail.1.bias"]
    renamed["tail.1.weight"] = torch.einsum("oj,jchw->ochw", shift_out, tail) / (EDSR_RGB_RANGE * std)[:, None, None, None]
    renamed["tail.1.bias"] = ((shift_out @ tail_bias + offset_out) / EDSR_RGB_RANGE - mean) / std
    model.load_state_dict({key: value.float() for key, value in renamed.items()})
    return model.eval()


# ----------------------------------------------------------------------------- command line

IMPORTERS: dict[str, Callable[[str | Path], nn.Module]] = {
    "dncnn-matconvnet": import_dncnn_matconvnet,
    "edsr-pytorch": import_edsr_pytorch,
}


def import_weights(kind: str, source: str | Path, output: str | Path, overwrite: bool = False) -> Path:
    """Convert ``source`` with the ``kind`` importer and write a float32 checkpoint to ``output`` (atomically).

    The checkpoint records where the weights came from (``imported_from``: kind, file name, SHA-256).
    """
    source, output = Path(source), Path(output)
    if kind not in IMPORTERS:
        raise ValueError(f"unknown weights format {kind!r}: expected one of {', '.join(IMPORTERS)}")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: exists (add --overwrite to replace it)")
    model = IMPORTERS[kind](source)
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    origin = {"format": kind, "file": source.name, "sha256": digest.hexdigest()}
    return export_weights(model, output, half=False, imported_from=origin)
