"""MNIST-format IDX files: the reader, and a folder of train/t10k pairs as a Dataset."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.data.dataset import Dataset, Split
from edgecnn.data.splits import pool_dataset, train_test_dataset
from edgecnn.errors import BadInputError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (MNIST format), gzipped or not."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadInputError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise BadInputError(f"{path} is not an IDX file (bad magic number)")
    dims = raw[3]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise BadInputError(f"{path} is truncated (IDX header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise BadInputError(f"{path} is truncated or padded: {len(raw) - header} data bytes, expected {expected}")
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)


def find_idx_pair(folder: Path, prefix: str) -> tuple[Path, Path] | None:
    """The `<prefix>-images-idx3-ubyte[.gz]` / `<prefix>-labels-idx1-ubyte[.gz]` pair in a folder."""
    found = []
    for kind, dims in (("images", 3), ("labels", 1)):
        candidates = []
        for suffix in ("", ".gz"):
            for sep in ("-", "."):
                candidates.append(folder / f"{prefix}-{kind}{sep}idx{dims}-ubyte{suffix}")
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            return None
        found.append(match)
    return found[0], found[1]


def _read_idx_pair(pair: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(pair[0]), read_idx(pair[1])
    if images.ndim not in (3, 4) or images.dtype != np.uint8:
        raise BadInputError(f"{pair[0]} must hold uint8 images (N,H,W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise BadInputError(
            f"{pair[1]} holds {labels.shape} labels for {len(images)} images in {pair[0].name}"
        )
    return np.ascontiguousarray(images), labels.astype(np.int64)


def load_idx_folder(folder: str | Path, *, seed: int = 0, spec: str | None = None,
                    class_names: Sequence[str] | None = None) -> Dataset:
    """MNIST-format IDX files: train-* and t10k-* pairs; with only the t10k pair, it is split."""
    folder = Path(folder)
    spec = spec or f"idx:{folder}"
    train_pair, test_pair = find_idx_pair(folder, "train"), find_idx_pair(folder, "t10k")
    if test_pair is None:
        test_pair = find_idx_pair(folder, "test")
    if train_pair is None and test_pair is None:
        raise BadInputError(
            f"no IDX pair in {folder}: expected train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz]"
            " and/or t10k-images-idx3-ubyte[.gz] + t10k-labels-idx1-ubyte[.gz]"
        )
    pairs = [p for p in (train_pair, test_pair) if p is not None]
    arrays = [_read_idx_pair(p) for p in pairs]
    all_labels = np.concatenate([labels for _, labels in arrays])
    if all_labels.min() < 0:
        raise BadInputError(f"IDX labels in {folder} must be >= 0")
    num_classes = int(all_labels.max()) + 1
    names = tuple(class_names) if class_names else _idx_class_names(folder, num_classes)
    if train_pair is not None and test_pair is not None:
        (train_images, train_labels), (test_images, test_labels) = arrays
        if train_images.shape[1:] != test_images.shape[1:]:
            raise BadInputError(f"train and t10k images in {folder} differ in shape")
        return train_test_dataset(spec, Split(train_images, train_labels), Split(test_images, test_labels), names,
                                  seed=seed)
    images, labels = arrays[0]
    return pool_dataset(spec, Split(images, labels), names, seed=seed)


def _idx_class_names(folder: Path, num_classes: int) -> tuple[str, ...]:
    # An optional classes.txt (one name per line) names the labels; otherwise they are numbers.
    names_file = folder / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(names) >= num_classes:
            return tuple(names)
        raise BadInputError(f"{names_file} names {len(names)} classes but the labels go up to {num_classes - 1}")
    return tuple(str(i) for i in range(num_classes))
