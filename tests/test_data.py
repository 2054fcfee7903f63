"""Data SPECs, splits and the numpy preprocessing: real files written here, no network."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from edgecnn.data import (
    calibration_images,
    class_balanced_sample,
    load_data,
    preprocess_for,
    preprocessed_split,
    read_idx,
)
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec, bilinear_matrix


# ------------------------------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray, *, gzipped: bool) -> Path:
    """The MNIST IDX format: 0, 0, type code (0x08 = uint8), dims, big-endian sizes, raw data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    if gzipped:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def stroke_images(labels: np.ndarray, side: int = 12, seed: int = 0) -> np.ndarray:
    """Images whose class decides which row carries a bright stroke (learnable, but real pixels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), side, side), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 1 + int(label) % (side - 2), 2 : side - 2] = 250
    return images


def write_idx_pair(folder: Path, prefix: str, n: int, *, gzipped: bool, seed: int = 0, classes: int = 4):
    labels = np.arange(n, dtype=np.uint8) % classes
    images = stroke_images(labels, seed=seed)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gzipped=gzipped)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gzipped=gzipped)
    return images, labels


# --------------------------------------------------------------------------------------- digits


def test_digits_splits_are_deterministic_disjoint_and_complete():
    first, again, other = load_data("digits", seed=0), load_data("digits", seed=0), load_data("digits", seed=1)
    assert first.class_names == tuple(str(i) for i in range(10))
    assert len(first.train) + len(first.val) + len(first.test) == 1797
    assert first.train.images.dtype == np.uint8 and first.train.images.shape[1:] == (8, 8)
    assert first.train.images.max() == 255  # 16 ink levels scaled to the full byte
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.split(name).images, again.split(name).images)
        np.testing.assert_array_equal(first.split(name).labels, again.split(name).labels)
    assert not np.array_equal(first.test.images, other.test.images)  # another seed, another split
    # No image of the test split is also a training image (the pool is split, not resampled).
    train_rows = {row.tobytes() for row in first.train.images}
    assert sum(row.tobytes() in train_rows for row in first.test.images) < 5  # the digits set has a few duplicates
    # Stratified: every class is in every split.
    for name in ("train", "val", "test"):
        assert set(first.split(name).labels.tolist()) == set(range(10))


def test_unknown_spec_and_missing_folder_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="unknown data SPEC"):
        load_data("svhn")
    with pytest.raises(BadInputError, match="does not exist"):
        load_data(f"idx:{tmp_path / 'nope'}")
    with pytest.raises(BadInputError, match="needs a folder"):
        load_data("imagefolder:")


def test_torchvision_dataset_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    with pytest.raises(BadInputError) as caught:
        load_data("mnist", data_root=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte.gz" in message
    with pytest.raises(BadInputError, match="cifar-10-python.tar.gz"):
        load_data("cifar10", data_root=tmp_path, download=False)


# ------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip", "plain"])
def test_idx_folder_with_train_and_t10k_pairs(tmp_path, gzipped):
    train_images, train_labels = write_idx_pair(tmp_path, "train", 80, gzipped=gzipped, seed=1)
    test_images, test_labels = write_idx_pair(tmp_path, "t10k", 24, gzipped=gzipped, seed=2)
    np.testing.assert_array_equal(read_idx(next(tmp_path.glob("train-images*"))), train_images)

    dataset = load_data(f"idx:{tmp_path}", seed=3)
    assert dataset.class_names == ("0", "1", "2", "3")
    # The official test split stays the test split; validation comes out of the training pair.
    np.testing.assert_array_equal(dataset.test.images, test_images)
    np.testing.assert_array_equal(dataset.test.labels, test_labels)
    assert len(dataset.train) + len(dataset.val) == 80 and len(dataset.val) == 8
    seen = {row.tobytes() for row in train_images}
    assert all(row.tobytes() in seen for row in dataset.train.images)
    assert dataset.image_size == 12 and dataset.image_channels == 1


def test_idx_folder_with_only_t10k_is_split_three_ways(tmp_path):
    images, labels = write_idx_pair(tmp_path, "t10k", 60, gzipped=True)
    (tmp_path / "classes.txt").write_text("up\ndown\nleft\nright\n")
    dataset = load_data(f"idx:{tmp_path}")
    assert dataset.class_names == ("up", "down", "left", "right")
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 60
    assert len(dataset.test) > 0 and len(dataset.val) > 0
    everything = np.concatenate([dataset.train.images, dataset.val.images, dataset.test.images])
    assert sorted(r.tobytes() for r in everything) == sorted(r.tobytes() for r in images)


def test_idx_corrupt_and_mismatched_files_are_bad_input(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 4, 4) + b"\x01" * 7)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(10, np.uint8), gzipped=False)
    with pytest.raises(BadInputError, match="truncated"):
        load_data(f"idx:{tmp_path}")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((9, 4, 4), np.uint8), gzipped=False)
    with pytest.raises(BadInputError, match="labels for 9 images"):
        load_data(f"idx:{tmp_path}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no IDX pair"):
        load_data(f"idx:{empty}")


# ---------------------------------------------------------------------------------- imagefolder


def test_image_folder_reads_class_subfolders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (tmp_path / name).mkdir()
        for i in range(10):
            pixels = np.clip(rng.normal(colour, 20, size=(10, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    dataset = load_data(f"imagefolder:{tmp_path}")
    assert dataset.class_names == ("cat", "dog")
    assert dataset.train.images.shape[1:] == (10, 10, 3) and dataset.image_channels == 3
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 20
    red = dataset.train.images[dataset.train.labels == 0][..., 0].mean()
    assert red > 150  # the labels follow the folders


def test_empty_image_folder_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no class sub-folders"):
        load_data(f"imagefolder:{tmp_path}")
    (tmp_path / "cat").mkdir()
    with pytest.raises(BadInputError, match="has no images"):
        load_data(f"imagefolder:{tmp_path}")


# --------------------------------------------------------------------------------- preprocessing


def test_bilinear_resize_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(0).integers(0, 256, size=(3, 8, 11), dtype=np.uint8)
    spec = PreprocessSpec(size=32, channels=1, mean=(0.0,), std=(1.0,))
    ours = spec.to_unit_range(images)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(images[:, None].astype(np.float32) / 255.0), size=(32, 32), mode="bilinear",
        align_corners=False, antialias=False,
    ).numpy()
    np.testing.assert_allclose(ours, reference, atol=2e-6)
    # Downscaling too (no antialias, as torch without it).
    big = np.random.default_rng(1).integers(0, 256, size=(2, 40, 40), dtype=np.uint8)
    small = PreprocessSpec(size=17, channels=1, mean=(0.0,), std=(1.0,)).to_unit_range(big)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(big[:, None].astype(np.float32) / 255.0), size=(17, 17), mode="bilinear", align_corners=False,
    ).numpy()
    np.testing.assert_allclose(small, reference, atol=2e-6)
    np.testing.assert_allclose(bilinear_matrix(5, 9).sum(axis=1), 1.0, atol=1e-6)


def test_apply_normalises_converts_channels_and_takes_floats():
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    spec = PreprocessSpec(size=8, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    out = spec.apply(images)
    assert out.shape == (4, 3, 8, 8) and out.dtype == np.float32
    expected = (images[:, None].astype(np.float32) / 255.0 - np.array([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)) / np.array(
        [0.2, 0.25, 0.5]
    ).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Float pixels in [0, 1] give the same model input as the uint8 pixels they came from.
    np.testing.assert_allclose(spec.apply(images.astype(np.float32) / 255.0), out, atol=1e-5)
    # RGB into a 1-channel model: luma, as PIL's convert("L").
    rgb = np.zeros((1, 4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    gray = PreprocessSpec(size=4, channels=1, mean=(0.0,), std=(1.0,)).apply(rgb)
    np.testing.assert_allclose(gray, 0.587, atol=1e-5)
    with pytest.raises(BadInputError, match="uint8"):
        spec.apply(images.astype(np.int32))


def test_preprocess_spec_round_trips_and_rejects_bad_fields():
    spec = PreprocessSpec(size=32, channels=1, mean=(0.3,), std=(0.3,), class_names=("a", "b"), data="digits",
                          normalization="dataset")
    again = PreprocessSpec.from_dict(spec.to_dict())
    assert again == spec and again.input_shape == (1, 32, 32) and again.num_classes == 2
    with pytest.raises(BadInputError, match="std must be positive"):
        PreprocessSpec(size=8, channels=1, mean=(0.0,), std=(0.0,))
    with pytest.raises(BadInputError, match="channels is 3"):
        PreprocessSpec(size=8, channels=3, mean=(0.0,), std=(1.0,))
    with pytest.raises(BadInputError, match="missing field 'size'"):
        PreprocessSpec.from_dict({"channels": 1, "mean": [0], "std": [1]})


def test_preprocess_for_uses_model_minimum_and_dataset_statistics():
    from edgecnn.zoo import get_spec

    dataset = load_data("digits")
    spec = get_spec("mobilenet_v2")
    scratch = preprocess_for(spec, dataset, pretrained=False)
    assert scratch.size == 32 and scratch.channels == 3 and scratch.normalization == "dataset"
    assert scratch.data == "digits" and scratch.class_names == dataset.class_names
    inputs, labels = preprocessed_split(dataset, "train", scratch)
    # Measured on the training split: the training input is centred and unit-scaled per channel.
    np.testing.assert_allclose(inputs.mean(axis=(0, 2, 3)), 0.0, atol=1e-3)
    np.testing.assert_allclose(inputs.std(axis=(0, 2, 3)), 1.0, atol=1e-3)
    assert len(labels) == len(dataset.train)
    pretrained = preprocess_for(spec, dataset, pretrained=True)
    assert pretrained.mean == spec.mean and pretrained.normalization == "model"


def test_calibration_images_are_deterministic_balanced_training_samples():
    dataset = load_data("digits")
    spec = PreprocessSpec(size=16, channels=1, mean=(0.3,), std=(0.3,), class_names=dataset.class_names)
    images, labels = calibration_images(dataset, spec, n=300, seed=0)
    again, again_labels = calibration_images(dataset, spec, n=300, seed=0)
    assert images.shape == (300, 1, 16, 16) and images.dtype == np.float32
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert np.bincount(labels, minlength=10).tolist() == [30] * 10
    # Every calibration image is a training image, preprocessed.
    train_inputs = spec.apply(dataset.train.images)
    train_rows = {row.tobytes() for row in train_inputs}
    assert all(row.tobytes() in train_rows for row in images)
    other, _ = calibration_images(dataset, spec, n=300, seed=1)
    assert not np.array_equal(other, images)
    # More than there are: all of them, each once.
    indices = class_balanced_sample(np.array([0, 0, 1]), 10)
    assert sorted(indices.tolist()) == [0, 1, 2]
    limited, limited_labels = preprocessed_split(dataset, "test", spec, limit=50)
    assert limited.shape == (50, 1, 16, 16) and np.bincount(limited_labels).tolist() == [5] * 10
