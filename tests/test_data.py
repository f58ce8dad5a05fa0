"""Readers, splits, generated sets and stage datasets on tiny data written by the tests."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from helpers import data
from helpers.data import deblur, generated_sets
from helpers.data import (
    DeblurDataset,
    DenoiseDataset,
    FolderPairs,
    GoproPairs,
    PipelineDataset,
    RealBlurPairs,
    SuperResolutionDataset,
    build_dataset,
    build_folder_set,
    build_sample_set,
    pairs_for,
    resolve_source,
    split_by_sequence,
)
from helpers.degrade import downscale_with, quantize, resize
from helpers.io import list_images, read_image, write_image
from conftest import make_gopro_tree


def solid(colour: int, width: int = 128, height: int = 72) -> np.ndarray:
    return np.full((height, width, 3), colour, np.uint8)


# ----------------------------------------------------------------------------- readers


def test_gopro_pairs_lists_every_frame_with_its_sequence(gopro_root: Path) -> None:
    train = GoproPairs(gopro_root, "train")
    assert len(train) == 8 and train.sequences == ["seq00", "seq01", "seq02", "seq03"]
    first = train[0]
    assert first.name == "seq00/000000" and first.sequence == "seq00"
    assert first.sharp == gopro_root / "train/seq00/sharp/000000.png"
    assert first.blurry == gopro_root / "train/seq00/blur/000000.png"
    assert len(GoproPairs(gopro_root, "test")) == 2


def test_gopro_pairs_errors_name_the_path(gopro_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere/train"):
        GoproPairs(gopro_root / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="blur_gamma"):
        GoproPairs(gopro_root, "train", blur_folder="blur_gamma")
    (gopro_root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no sequence folders"):
        GoproPairs(gopro_root, "empty")
    for png in (gopro_root / "test/seq00/blur").iterdir():
        png.unlink()
    with pytest.raises(FileNotFoundError, match=r"seq00/blur: no images"):
        GoproPairs(gopro_root, "test")
    write_image(gopro_root / "train/seq01/sharp/000099.png", solid(0))
    with pytest.raises(ValueError, match=r"seq01: 1 frames have no sharp/blurry partner: 000099"):
        GoproPairs(gopro_root, "train")


def write_realblur(root: Path) -> Path:
    lines = []
    for scene in ("scene001", "scene002"):
        for number in (1, 2):
            for kind in ("gt", "blur"):
                write_image(root / "RealBlur-J_ECC" / scene / kind / f"{kind}_{number}.png", solid(40 * number))
            lines.append(f"RealBlur-J_ECC/{scene}/gt/gt_{number}.png RealBlur-J_ECC/{scene}/blur/blur_{number}.png")
    (root / "RealBlur_J_train_list.txt").write_text("\n".join(lines) + "\n\n")
    return root


def test_realblur_frames_are_used_whole_with_every_training_scene(tmp_path: Path) -> None:
    """RealBlur's portrait frames keep their edges (a 9:16 crop cut 36% of the pixels) and no scene is held out."""
    root = write_realblur(tmp_path / "RealBlur")
    portrait = np.full((386, 340, 3), 90, np.uint8)
    portrait[:, :20] = (250, 0, 0)  # a red left edge: outside the centred 9:16 crop (217 of 340 columns)
    write_image(root / "RealBlur-J_ECC/scene002/gt/gt_1.png", portrait)
    write_image(root / "RealBlur-J_ECC/scene002/blur/blur_1.png", portrait)
    pairs = data.pairs_for(f"realblur:{root}", "train", val_fraction=0.0)
    assert len({pair.sequence for pair in pairs}) == 2 and all(pair.fit == "whole" for pair in pairs)
    gopro_like = make_gopro_tree(tmp_path / "gopro", {"train": 1}, frames=1)
    dataset = data.DeblurDataset(data.pairs_for(f"gopro:{gopro_like}", "train", 0.0), patch_size=64, extra_pairs=pairs,
                                 extra_ratio=1.0, cache_dir=tmp_path / "cache")
    frame = dataset.extra.get(pairs.index(next(p for p in pairs if p.name == "scene002/blur_1")), [("sharp", 1)])[0]
    expected = resize(resize(portrait, 1128, 1280, "bicubic"), 564, 640)  # long side 1280, then the 2x downscale
    assert frame.shape == (640, 564, 3)
    np.testing.assert_allclose(frame.astype(int), expected.astype(int), atol=1)
    assert tuple(frame[320, 0]) == (250, 0, 0)
    with pytest.raises(ValueError, match="frame fit"):
        data.DeblurDataset(list(pairs) + data.pairs_for(f"gopro:{gopro_like}", "train", 0.0), patch_size=32)


def test_realblur_list_parsing_and_errors(tmp_path: Path) -> None:
    root = write_realblur(tmp_path / "RealBlur")
    pairs = RealBlurPairs(root, "train")
    assert len(pairs) == 4 and pairs.sequences == ["scene001", "scene002"]
    assert pairs[1].sharp == root / "RealBlur-J_ECC/scene001/gt/gt_2.png"
    assert pairs[1].blurry == root / "RealBlur-J_ECC/scene001/blur/blur_2.png"
    with pytest.raises(FileNotFoundError, match="RealBlur_J_test_list.txt"):
        RealBlurPairs(root, "test")
    (root / "RealBlur-J_ECC/scene002/blur/blur_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="scene002/blur/blur_1.png"):
        RealBlurPairs(root, "train")
    (root / "RealBlur_J_test_list.txt").write_text("only_one_path.png\n")
    with pytest.raises(ValueError, match=r"RealBlur_J_test_list.txt:1"):
        RealBlurPairs(root, "test")


def test_folder_pairs_match_by_stem(tmp_path: Path) -> None:
    for stem in ("clipA_0001", "clipA_0002", "clipB_0001"):
        write_image(tmp_path / "sharp" / f"{stem}.png", solid(10))
        write_image(tmp_path / "blurry" / f"{stem}.jpg", solid(10))
    pairs = FolderPairs(tmp_path / "sharp", tmp_path / "blurry")
    assert [p.name for p in pairs] == ["clipA_0001", "clipA_0002", "clipB_0001"]
    assert pairs.sequences == ["clipA", "clipB"]
    assert pairs[2].blurry == tmp_path / "blurry/clipB_0001.jpg"
    write_image(tmp_path / "blurry" / "stray.png", solid(0))
    with pytest.raises(ValueError, match="stray"):
        FolderPairs(tmp_path / "sharp", tmp_path / "blurry")
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match="none: no images"):
        FolderPairs(tmp_path / "none", tmp_path / "blurry")


def test_split_by_sequence_never_shares_a_sequence(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    train, val = split_by_sequence(pairs, 0.25, seed=3)
    assert {p.sequence for p in train}.isdisjoint({p.sequence for p in val})
    assert len({p.sequence for p in val}) == 1 and len(train) + len(val) == len(pairs)
    assert split_by_sequence(pairs, 0.25, seed=3) == (train, val)
    chosen = {tuple(p.sequence for p in split_by_sequence(pairs, 0.25, seed)[1]) for seed in range(10)}
    assert len(chosen) > 1  # the seed picks which sequences validate
    assert split_by_sequence(pairs, 0.0)[1] == []


def test_resolve_source_and_pairs_for(gopro_root: Path) -> None:
    spec = f"gopro:{gopro_root}"
    train, val, test = (pairs_for(spec, split) for split in ("train", "val", "test"))
    assert len(train) == 6 and len(val) == 2 and len(test) == 2
    assert not {p.sequence for p in train} & {p.sequence for p in val}
    assert resolve_source(spec).pairs("val", val_fraction=0.5, seed=1) != []
    for bad in ("gopro", "nonsense:x", "pairs:only_one_dir"):
        with pytest.raises(ValueError, match="unknown data source"):
            resolve_source(bad)
    with pytest.raises(ValueError, match="unknown split"):
        resolve_source(spec).pairs("validation")


# ----------------------------------------------------------------------------- generated sets


def test_sample_set_builds_offline_once_and_rebuilds_if_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the sample set must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    root = build_sample_set(tmp_path)
    train, test = GoproPairs(root, "train"), GoproPairs(root, "test")
    assert len(train.sequences) == 11 and len(test.sequences) == 2 and len(train) == 22
    assert not set(train.sequences) & set(test.sequences)
    sharp, blurry = read_image(train[0].sharp), read_image(train[0].blurry)
    assert sharp.shape == blurry.shape == (720, 1280, 3)
    assert np.abs(sharp.astype(int) - blurry.astype(int)).mean() > 1  # actually blurred

    marker = root / ".complete"
    stamp = marker.stat().st_mtime_ns
    monkeypatch.setattr(generated_sets, "_write_sequence", lambda *a: pytest.fail("rebuilt a complete sample set"))
    assert build_sample_set(tmp_path) == root and marker.stat().st_mtime_ns == stamp
    monkeypatch.undo()

    marker.unlink()  # as if the build had been killed before finishing
    rebuilt = build_sample_set(tmp_path)
    assert (rebuilt / ".complete").is_file()
    assert np.array_equal(read_image(GoproPairs(rebuilt, "train")[0].blurry), blurry)  # deterministic


def test_build_folder_set_degrades_user_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for clip in ("a", "b", "c"):
        for number in range(2):
            write_image(photos / clip / f"{number}.png", rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    (photos / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        root = build_folder_set(photos, root=tmp_path / "cache")
    train, test = GoproPairs(root, "train"), GoproPairs(root, "test")
    assert train.sequences == ["a", "b"] and test.sequences == ["c"]
    assert read_image(train[0].sharp).shape == (720, 1280, 3)
    assert build_folder_set(photos, root=tmp_path / "cache") == root  # cached
    flat = tmp_path / "flat"
    for number in range(5):
        write_image(flat / f"{number:03d}.png", solid(9 * number, 160, 90))
    flat_root = build_folder_set(flat, root=tmp_path / "cache", frames_per_sequence=2)
    assert GoproPairs(flat_root, "train").sequences == ["part000", "part001"]
    assert GoproPairs(flat_root, "test").sequences == ["part002"]


# ----------------------------------------------------------------------------- stage datasets


@pytest.mark.parametrize("cached", [False, True])
def test_stage_datasets_shapes_and_ranges(gopro_root: Path, tmp_path: Path, cached: bool) -> None:
    pairs = GoproPairs(gopro_root, "train")
    cache = tmp_path / "cache" if cached else None
    expected = {
        "dncnn": ((3, 48, 48), (3, 48, 48)),
        "unet": ((3, 48, 48), (3, 48, 48)),
        "edsr": ((3, 48, 48), (3, 96, 96)),
        "pipeline": ((3, 360, 640), (3, 720, 1280)),
    }
    for stage, (input_shape, target_shape) in expected.items():
        options = {"cache_dir": cache} if stage == "pipeline" else {"patch_size": 48, "cache_dir": cache}
        dataset = build_dataset(stage, pairs, **options)
        assert len(dataset) == len(pairs)
        source, target = dataset[len(dataset) - 1]
        assert tuple(source.shape) == input_shape and tuple(target.shape) == target_shape
        for tensor in (source, target):
            assert tensor.dtype == torch.float32 and 0.0 <= tensor.min() and tensor.max() <= 1.0
    with pytest.raises(ValueError, match="unknown stage"):
        build_dataset("gan", pairs)


def test_full_frames_keep_portrait_orientation(tmp_path: Path) -> None:
    write_image(tmp_path / "s" / "p_1.png", solid(100, 72, 128))
    write_image(tmp_path / "b" / "p_1.png", solid(90, 72, 128))
    source, target = PipelineDataset(FolderPairs(tmp_path / "s", tmp_path / "b"))[0]
    assert source.shape == (3, 640, 360) and target.shape == (3, 1280, 720)
    assert torch.allclose(source, torch.full_like(source, 90 / 255)) and torch.allclose(target, torch.full_like(target, 100 / 255))


def test_denoise_input_is_target_plus_noise_of_sigma(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    clean_input, clean_target = DenoiseDataset(pairs, patch_size=64, sigma=0.0)[3]
    assert torch.equal(clean_input, clean_target)  # sigma 0: the same crop and augmentation on both
    noisy, target = DenoiseDataset(pairs, patch_size=None, sigma=15.0, augment=False)[0]
    residual = (noisy - target)[(target > 0.1) & (target < 0.9)] * 255  # away from clipping
    assert residual.std().item() == pytest.approx(15.0, rel=0.05)
    ranged = DenoiseDataset(pairs, patch_size=None, sigma=(0.0, 55.0), augment=False)
    stds = {round(((x - y) * 255).std().item()) for x, y in (ranged[i] for i in range(4))}
    assert len(stds) > 1  # sigma drawn per item



def test_clean_fraction_leaves_that_share_of_items_noise_free(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")

    def clean_items(fraction: float) -> int:
        dataset = DenoiseDataset(pairs, patch_size=32, sigma=(20.0, 30.0), samples_per_frame=10, clean_fraction=fraction)
        return sum(torch.equal(noisy, target) for noisy, target in (dataset[i] for i in range(len(dataset))))

    count = len(DenoiseDataset(pairs, patch_size=32, samples_per_frame=10))
    assert clean_items(0.0) == 0 and clean_items(1.0) == count
    assert 0.2 * count < clean_items(0.5) < 0.8 * count
    with pytest.raises(ValueError, match="clean_fraction must be in \\[0, 1\\]"):
        DenoiseDataset(pairs, clean_fraction=-0.1)


def test_blurry_fraction_draws_that_share_of_clean_images_from_the_blurry_frames(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    frames = DeblurDataset(pairs, patch_size=None, augment=False)  # (blurry, sharp) 640x360 views of each pair

    def blurry_items(fraction: float) -> int:
        dataset = DenoiseDataset(pairs, patch_size=None, sigma=0.0, augment=False, samples_per_frame=10,
                                 blurry_fraction=fraction)
        count = 0
        for index in range(len(dataset)):
            noisy, target = dataset[index]
            blurry, sharp = frames[index // 10]
            assert torch.equal(noisy, target) and (torch.equal(target, blurry) != torch.equal(target, sharp))
            count += torch.equal(target, blurry)
        return count

    count = len(pairs) * 10
    assert blurry_items(0.0) == 0 and blurry_items(1.0) == count
    assert 0.2 * count < blurry_items(0.5) < 0.8 * count
    with pytest.raises(ValueError, match="blurry_fraction must be in \\[0, 1\\]"):
        DenoiseDataset(pairs, blurry_fraction=1.5)


def _channel_gains(coloured: torch.Tensor, plain: torch.Tensor) -> dict[tuple[int, ...], np.ndarray]:
    """Every channel order under which ``coloured`` is ``plain`` times per-channel gains (to 8-bit rounding)."""
    fits = {}
    for order in itertools.permutations(range(3)):
        source = plain[list(order)].reshape(3, -1).double()
        gains = (coloured.reshape(3, -1).double() * source).sum(1) / (source * source).sum(1).clamp_min(1e-12)
        if ((coloured.reshape(3, -1) - gains[:, None] * source).abs().max() <= 1 / 255).item():
            fits[order] = gains.numpy()
    return fits


def test_colour_augment_recolours_input_and_target_alike(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    plain = DeblurDataset(pairs, patch_size=32, seed=3, samples_per_frame=4)
    coloured = DeblurDataset(pairs, patch_size=32, seed=3, samples_per_frame=4, colour_augment=1.0)
    changed = 0
    for index in range(len(plain)):
        (blurry, sharp), (new_blurry, new_sharp) = plain[index], coloured[index]  # same crop and flips
        fits = _channel_gains(new_sharp, sharp)
        assert fits, "the target is not a channel reordering with gains of the plain target"
        shared = [order for order, gains in _channel_gains(new_blurry, blurry).items() if order in fits
                  and np.allclose(gains, fits[order], atol=0.02)]
        assert shared, "input and target were recoloured differently"
        gains = fits[shared[0]]
        assert gains.max() == pytest.approx(1.0, abs=0.02) and gains.min() >= data.COLOUR_GAIN_LOW - 0.02
        changed += not torch.equal(new_sharp, sharp)
    assert changed > len(plain) // 2
    with pytest.raises(ValueError, match="colour_augment must be in \\[0, 1\\]"):
        DenoiseDataset(pairs, colour_augment=2.0)


def test_super_resolution_augmentation_is_paired(gopro_root: Path) -> None:
    dataset = SuperResolutionDataset(GoproPairs(gopro_root, "train"), patch_size=32, augment=True, seed=5)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            low, high = dataset[index]
            assert high.shape[-1] == 2 * low.shape[-1]
            # The low-res frame is the antialiased 2x downscale of the high-res one, patch by patch.
            assert (F.avg_pool2d(high[None], 2)[0] - low).abs().max() <= 1.5 / 255


def test_deblur_patches_come_from_the_same_place(gopro_root: Path) -> None:
    dataset = DeblurDataset(GoproPairs(gopro_root, "train"), patch_size=40, augment=True, seed=1)
    for index in range(len(dataset)):
        blurry, sharp = dataset[index]
        assert (blurry.mean() - sharp.mean()).abs() < 0.03  # blur keeps the local mean
        assert (blurry - sharp).abs().mean() < 0.08


def test_items_depend_only_on_seed_epoch_index(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    first = DeblurDataset(pairs, patch_size=32, seed=0, samples_per_frame=2)
    second = DeblurDataset(pairs, patch_size=32, seed=0, samples_per_frame=2)
    assert len(first) == 16
    for index in (0, 5, 15):
        assert all(torch.equal(a, b) for a, b in zip(first[index], second[index]))
    assert not torch.equal(first[0][0], first[1][0])  # repeated frame, different patch
    epoch0 = first[4][0]
    first.set_epoch(1)
    assert not torch.equal(epoch0, first[4][0])
    first.set_epoch(0)
    assert torch.equal(epoch0, first[4][0])
    other_seed = DeblurDataset(pairs, patch_size=32, seed=1, samples_per_frame=2)
    assert not torch.equal(epoch0, other_seed[4][0])


def test_items_do_not_depend_on_dataloader_workers(gopro_root: Path, tmp_path: Path) -> None:
    dataset = DenoiseDataset(GoproPairs(gopro_root, "train"), patch_size=32, sigma=(0, 50), cache_dir=tmp_path)
    dataset.set_epoch(3)
    batches = [
        torch.cat([x for x, _ in DataLoader(dataset, batch_size=3, num_workers=workers)])
        for workers in (0, 2)
    ]
    assert torch.equal(batches[0], batches[1])


def test_deblur_mixes_extra_pairs_by_ratio(gopro_root: Path, tmp_path: Path) -> None:
    for number in range(3):
        write_image(tmp_path / "xs" / f"x_{number}.png", solid(250))
        write_image(tmp_path / "xb" / f"x_{number}.png", solid(240))
    extra = FolderPairs(tmp_path / "xs", tmp_path / "xb")
    pairs = GoproPairs(gopro_root, "train")

    def extra_fraction(ratio: float) -> float:
        dataset = DeblurDataset(
            pairs, patch_size=16, extra_pairs=extra, extra_ratio=ratio, samples_per_frame=25, cache_dir=tmp_path / "c"
        )
        return np.mean([torch.all(dataset[i][1] == 250 / 255).item() for i in range(len(dataset))])

    assert extra_fraction(1.0) == 1.0
    assert 0.2 < extra_fraction(0.3) < 0.4
    with pytest.raises(ValueError, match="extra_pairs"):
        DeblurDataset(pairs, extra_ratio=0.5)


def test_unreadable_frames_are_skipped_with_a_warning(gopro_root: Path, tmp_path: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    pairs[2].blurry.write_bytes(b"\x89PNG truncated")
    with pytest.warns(UserWarning, match=r"skipped 1 of 8 unreadable frames; first: .*000000.png"):
        cached = DeblurDataset(pairs, patch_size=16, cache_dir=tmp_path)
    assert len(cached) == 7
    lazy = DeblurDataset(pairs, patch_size=16)  # decodes per item: finds out on access
    with pytest.warns(UserWarning, match="skipping unreadable frame"):
        blurry, _ = lazy[2]
    assert blurry.shape == (3, 16, 16)


def test_patch_larger_than_frame_is_an_error(gopro_root: Path) -> None:
    with pytest.raises(ValueError, match="patch_size 400"):
        DenoiseDataset(GoproPairs(gopro_root, "train"), patch_size=400)[0]


def _sharpness(image: torch.Tensor) -> float:
    """Variance of the Laplacian of the grey image: drops when an image is blurred."""
    grey = image.mean(dim=0, keepdim=True)[None]
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return float(F.conv2d(grey, kernel).var())


def test_synthetic_blur_replaces_stored_inputs_with_fresh_deterministic_blur(gopro_root: Path) -> None:
    pairs = GoproPairs(gopro_root, "train")
    stored = DeblurDataset(pairs, patch_size=64, seed=3)
    fresh = DeblurDataset(pairs, patch_size=64, seed=3, synthetic_blur=1.0)
    again = DeblurDataset(pairs, patch_size=64, seed=3, synthetic_blur=1.0)
    (stored_input, target), (fresh_input, fresh_target) = stored[1], fresh[1]
    assert torch.equal(target, fresh_target)  # same patch and augmentation: only the input changes
    assert not torch.equal(stored_input, fresh_input)
    assert torch.equal(fresh_input, again[1][0])  # deterministic given (seed, epoch, index)
    assert _sharpness(fresh_input) < 0.8 * _sharpness(fresh_target)
    fresh.set_epoch(1)
    assert not torch.equal(fresh[1][0], fresh_input)  # a new blur every epoch
    with pytest.raises(ValueError, match="synthetic_blur must be in \\[0, 1\\]"):
        DeblurDataset(pairs, synthetic_blur=1.5)


def test_synthetic_blur_extents_range_from_slight_to_gopro_strong(gopro_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extents = []

    def record(image: np.ndarray, rng: np.random.Generator, max_shift: float) -> np.ndarray:
        extents.append(max_shift)
        return image

    monkeypatch.setattr(deblur, "motion_blur", record)
    dataset = DeblurDataset(GoproPairs(gopro_root, "train"), patch_size=32, synthetic_blur=1.0, samples_per_frame=20)
    for index in range(len(dataset)):
        dataset[index]
    strongest = data.SYNTHETIC_BLUR_SHIFT
    assert all(data.SYNTHETIC_BLUR_SMALLEST * strongest <= extent <= strongest for extent in extents)
    assert min(extents) < 0.4 * strongest and max(extents) > 0.85 * strongest


# ----------------------------------------------------------------------------- native-resolution photographs


def write_photos(folder: Path, count: int, colour: tuple[int, int, int] | None = None, size: tuple[int, int] = (150, 110)) -> Path:
    """``count`` photos of ``size`` (width, height): crops of astronaut, or solid ``colour``."""
    import skimage.data

    astronaut = skimage.data.astronaut()
    width, height = size
    for index in range(count):
        photo = np.full((height, width, 3), colour, np.uint8) if colour else astronaut[7 * index : 7 * index + height, : width]
        write_image(folder / f"photo{index:03d}.png", np.ascontiguousarray(photo))
    return folder


def library(tmp_path: Path, split: str = "train", **options) -> data.PhotoLibrary:
    return data.PhotoLibrary([data.PhotoFolder(write_photos(tmp_path / "photos", 6))], split, **options)


def test_photo_folders_parse_shares_and_refuse_bad_ones(tmp_path: Path) -> None:
    first, second = write_photos(tmp_path / "a", 1), write_photos(tmp_path / "b", 1)
    folders = data.parse_photo_folders(f"{first}=0.7,{second}")
    assert [(f.path, f.share) for f in folders] == [(first, 0.7), (second, 1.0)]
    with pytest.raises(ValueError, match="must be positive"):
        data.parse_photo_folders(f"{first}=0")
    with pytest.raises(ValueError, match="must be a number"):
        data.parse_photo_folders(f"{first}=lots")
    with pytest.raises(FileNotFoundError, match="nowhere: photo folder not found"):
        data.parse_photo_folders("nowhere")


def test_photo_split_holds_out_whole_photos_by_seed(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "photos", 20)
    train, val = data.split_photos(list_images(folder), 0.1, seed=3)
    assert len(val) == 2 and not set(train) & set(val) and len(train) + len(val) == 20
    assert data.split_photos(list_images(folder), 0.1, seed=3) == (train, val)
    assert data.split_photos(list_images(folder), 0.1, seed=4)[1] != val


def test_photo_patches_are_native_resolution_crops(tmp_path: Path) -> None:
    """With min_scale 1 a high-res target is an exact crop of a photo: nothing resized, nothing upscaled."""
    photos = library(tmp_path, val_fraction=0.0)
    dataset = data.PhotoSuperResolutionDataset(photos, patch_size=24, length=8, augment=False, min_scale=1.0,
                                               degradations=data.PhotoDegradations(downscale_kernels=("area",)))
    originals = [read_image(path) for path in photos.groups[0]]
    for index in range(len(dataset)):
        low, high = dataset[index]
        target = np.rint(high.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        found = [cv2_match(photo, target) for photo in originals]
        assert any(found), f"item {index} is not an exact crop of any photo"
        expected_low = quantize(downscale_with(high.permute(1, 2, 0).numpy(), 2, "area"))
        assert torch.allclose(low, torch.from_numpy(expected_low).permute(2, 0, 1), atol=1e-6)


def test_a_downscale_kernel_named_twice_is_drawn_twice_as_often() -> None:
    degradations = data.PhotoDegradations(downscale_kernels=("area", "opencv-bicubic", "opencv-bicubic"))
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    aliased = downscale_with(image, 2, "opencv-bicubic")
    rng = np.random.default_rng(1)
    share = np.mean([np.array_equal(degradations.downscale(image, rng), aliased) for _ in range(600)])
    assert 0.6 < share < 0.73  # 2/3 expected; 600 draws: standard deviation 0.019


def cv2_match(photo: np.ndarray, patch: np.ndarray) -> bool:
    import cv2

    scores = cv2.matchTemplate(photo.astype(np.float32), patch.astype(np.float32), cv2.TM_SQDIFF)
    top, left = np.unravel_index(np.argmin(scores), scores.shape)  # best match, then checked exactly
    return bool(np.array_equal(photo[top : top + patch.shape[0], left : left + patch.shape[1]], patch))


def test_photos_too_small_for_a_patch_are_never_enlarged(tmp_path: Path) -> None:
    photos = library(tmp_path, val_fraction=0.0)  # 150x110 photos
    dataset = data.PhotoSuperResolutionDataset(photos, patch_size=60, length=2)  # needs 120x120
    with pytest.raises(ValueError, match="no readable photo of at least 120x120"):
        dataset[0]


def test_photo_folders_are_drawn_by_share(tmp_path: Path) -> None:
    red, blue = write_photos(tmp_path / "red", 3, (255, 0, 0)), write_photos(tmp_path / "blue", 3, (0, 0, 255))
    photos = data.PhotoLibrary([data.PhotoFolder(red, 4.0), data.PhotoFolder(blue, 1.0)], "train", val_fraction=0.0)
    dataset = data.PhotoSuperResolutionDataset(photos, patch_size=16, length=400)
    red_share = np.mean([float(dataset[i][1][0].mean()) > 0.5 for i in range(len(dataset))])
    assert red_share == pytest.approx(0.8, abs=0.06)  # binomial sd 0.02


def test_photo_items_are_seeded_per_epoch_and_validation_stays_fixed(tmp_path: Path) -> None:
    photos = library(tmp_path)
    degradations = data.PhotoDegradations(sigma=(0, 50))
    dataset = data.PhotoDenoiseDataset(photos, patch_size=32, length=4, seed=1, degradations=degradations)
    again = data.PhotoDenoiseDataset(photos, patch_size=32, length=4, seed=1, degradations=degradations)
    assert all(torch.equal(a, b) for i in range(4) for a, b in zip(dataset[i], again[i]))
    first = dataset[0][0]
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0][0])
    loader = DataLoader(again, batch_size=2, num_workers=2)  # same items in worker processes
    assert torch.equal(next(iter(loader))[0][0], first)


def test_unreadable_photos_are_skipped_with_a_count(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "photos", 2)
    (folder / "broken.png").write_bytes(b"not a png")
    photos = data.PhotoLibrary([data.PhotoFolder(folder)], "train", val_fraction=0.0)
    dataset = data.PhotoDeblurDataset(photos, patch_size=32, length=30)
    with pytest.warns(UserWarning, match=r"skipping unreadable photo \(1 so far\).*broken.png"):
        items = [dataset[i] for i in range(len(dataset))]
    assert photos.skipped == 1 and len(items) == 30


def test_a_truncated_photo_the_split_holds_out_is_replaced_and_counted_in_both_splits(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "photos", 20)
    files = list_images(folder)
    _, (held_out,) = data.split_photos(files, 0.05, seed=0)  # the one photo validation would get
    whole = held_out.read_bytes()
    held_out.write_bytes(whole[: len(whole) // 3])  # truncated: its header reads, its pixels do not
    with pytest.warns(UserWarning, match=rf"skipping unreadable photo \(1 so far\).*{held_out.name}"):
        val = data.PhotoLibrary([data.PhotoFolder(folder)], "val", val_fraction=0.05, seed=0)
    with pytest.warns(UserWarning, match=rf"skipping unreadable photo \(1 so far\).*{held_out.name}"):
        train = data.PhotoLibrary([data.PhotoFolder(folder)], "train", val_fraction=0.05, seed=0)
    assert val.skipped == train.skipped == 1 and len(val) == 1 and len(train) == 18
    assert held_out not in val.groups[0] + train.groups[0] and not set(val.groups[0]) & set(train.groups[0])
    patches = data.PhotoDeblurDataset(val, patch_size=48, length=4, augment=False)
    assert all(item[0].shape == (3, 48, 48) for item in patches)  # validation draws from the photo that took its place


def test_blur_kernels_with_nan_or_inf_are_refused_naming_the_file(tmp_path: Path) -> None:
    good = np.ones((5, 5), np.float32)
    for name, bad in {"nan": np.full((5, 5), np.nan, np.float32), "inf": np.where(np.eye(5) > 0, np.inf, 1.0)}.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, a=good, b=bad)
        with pytest.raises(ValueError, match=rf"{name}\.npz: expected 2-D finite non-negative kernels .* 1 of 2 are not "
                                             r"\(the first: number 2"):
            data.load_blur_kernels(path)
    np.savez(tmp_path / "good.npz", a=good)
    assert np.allclose(data.load_blur_kernels(tmp_path / "good.npz")[0], good / 25)


def test_blur_kernels_that_inflate_past_the_bound_are_refused_before_reading(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "huge.npz", a=np.zeros((4200, 4200), np.float32))  # 70 MB of zeros in 70 kB
    assert (tmp_path / "huge.npz").stat().st_size < 2**20
    with pytest.raises(ValueError, match=r"huge\.npz: not a readable .npz file of blur kernels \(its arrays inflate to "):
        data.load_blur_kernels(tmp_path / "huge.npz")


def test_photo_noise_has_its_sigma_and_clean_fraction_leaves_patches_clean(tmp_path: Path) -> None:
    photos = data.PhotoLibrary([data.PhotoFolder(write_photos(tmp_path / "grey", 2, (128, 128, 128)))], "train", val_fraction=0.0)
    noisy = data.PhotoDenoiseDataset(photos, patch_size=64, length=4, degradations=data.PhotoDegradations(sigma=20.0))
    residual = torch.stack([noisy[i][0] - noisy[i][1] for i in range(4)])
    assert residual.std().item() * 255 == pytest.approx(20.0, rel=0.03)
    assert torch.allclose(noisy[0][0] * 255, torch.round(noisy[0][0] * 255), atol=1e-3)  # 8-bit levels
    clean = data.PhotoDenoiseDataset(photos, patch_size=64, length=4,
                                     degradations=data.PhotoDegradations(sigma=20.0, clean_fraction=1.0))
    assert all(torch.equal(*clean[i]) for i in range(4))


def test_deblur_patches_are_blurred_by_real_or_synthetic_kernels_unless_kept_sharp(tmp_path: Path) -> None:
    photos = library(tmp_path, val_fraction=0.0)
    line = np.ones((1, 15), np.float32)

    def items(**options) -> list[tuple[torch.Tensor, torch.Tensor]]:
        dataset = data.PhotoDeblurDataset(photos, patch_size=48, length=6, degradations=data.PhotoDegradations(**options))
        return [dataset[i] for i in range(len(dataset))]

    for blurry, sharp in items(sharp_fraction=1.0):
        assert torch.allclose(blurry, torch.round(sharp * 255) / 255, atol=1e-6)
    synthetic, real = items(), items(kernels=[line], kernel_fraction=1.0)
    for (blurry, sharp), (real_blurry, real_sharp) in zip(synthetic, real):
        assert torch.equal(sharp, real_sharp) and not torch.equal(blurry, real_blurry)
        for image in (blurry, real_blurry):  # blur removes fine detail: lower high-frequency energy
            assert image.diff(dim=-1).abs().mean() < sharp.diff(dim=-1).abs().mean()


def test_cascade_items_are_degraded_in_the_cascades_order(tmp_path: Path) -> None:
    photos = library(tmp_path, val_fraction=0.0)
    degradations = data.PhotoDegradations(sigma=15.0, downscale_kernels=("bicubic",))
    dataset = data.PhotoCascadeDataset(photos, patch_size=20, length=3, intermediates=True, degradations=degradations)
    for index in range(len(dataset)):
        noisy, targets = dataset[index]  # the targets as helpers.cascade's loss takes them
        sharp, blurry_low, sharp_low = targets["final"], targets["blurry_lr"], targets["sharp_lr"]
        assert noisy.shape == blurry_low.shape == sharp_low.shape == (3, 20, 20) and sharp.shape == (3, 40, 40)
        expected_sharp_low = downscale_with(sharp.permute(1, 2, 0).numpy(), 2, "bicubic")
        assert torch.allclose(sharp_low, torch.from_numpy(expected_sharp_low).permute(2, 0, 1), atol=1e-6)
        assert (noisy - blurry_low).std().item() * 255 == pytest.approx(15.0, rel=0.25)
        detail = [image.diff(dim=-1).abs().mean() + image.diff(dim=-2).abs().mean() for image in (blurry_low, sharp_low)]
        assert detail[0] < 0.9 * detail[1]  # blurred before the downscale
    assert len(data.PhotoCascadeDataset(photos, patch_size=20, length=1)[0]) == 2  # (input, sharp) without intermediates
    assert type(data.build_photo_dataset("cascade", photos, patch_size=20, length=1)[0][1]) is dict
