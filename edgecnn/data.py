"""Datasets: a data SPEC becomes raw uint8 train/val/test splits, class names and a preprocessing spec.

SPECs (see DESIGN.md): `digits` (scikit-learn's bundled 8x8 digits, offline), `mnist`,
`fashion-mnist`, `cifar10` (torchvision download into the data root), `idx:DIR` (MNIST-format IDX
pairs, gzipped or not), `imagefolder:DIR` (one sub-folder per class).

Images stay raw (uint8, (N,H,W) or (N,H,W,C)) so that one `PreprocessSpec.apply` — the same code
on the host and on a device — turns them into model input. Splits are deterministic for a seed.
torch is not imported here at module level: only the torchvision downloads need it.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec

DATA_SPECS = ("digits", "mnist", "fashion-mnist", "cifar10", "idx:DIR", "imagefolder:DIR")
# Held out of a dataset that ships as a single pool: 70 % train, 15 % validation, 15 % test.
POOL_FRACTIONS = (0.70, 0.15, 0.15)
# Validation taken out of an official training split (the official test split stays the test).
VAL_FRACTION = 0.10
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class Split:
    """Raw images (uint8, (N,H,W) or (N,H,W,C)) and their integer labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(len(self.labels))

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        indices = np.asarray(indices, dtype=np.int64)
        return Split(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test splits of one data SPEC, with class names."""

    spec: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    seed: int = 0
    # Whether mirrored images are still valid samples (photos yes; digits and letters no).
    hflip_ok: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        """The data's native side (the larger of height and width)."""
        return int(max(self.train.images.shape[1:3]))

    @property
    def image_channels(self) -> int:
        return 1 if self.train.images.ndim == 3 else int(self.train.images.shape[-1])

    def split(self, name: str) -> Split:
        """'train', 'val' or 'test'."""
        if name not in ("train", "val", "test"):
            raise BadInputError(f"unknown split {name!r}: use train, val or test")
        return getattr(self, name)

    def summary(self) -> dict:
        return {
            "spec": self.spec,
            "classes": self.num_classes,
            "image_shape": list(self.train.images.shape[1:]),
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "seed": self.seed,
        }


def default_data_root() -> Path:
    """$EDGECNN_DATA, or ~/.cache/edgecnn/data."""
    env = os.environ.get("EDGECNN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgecnn" / "data"


def offline_requested() -> bool:
    """EDGECNN_OFFLINE=1 (or HF_HUB_OFFLINE=1): never download, use only what is on disk."""
    return any(os.environ.get(name, "") not in ("", "0") for name in ("EDGECNN_OFFLINE", "HF_HUB_OFFLINE"))


def load_data(spec: str, *, data_root: str | Path | None = None, seed: int = 0, download: bool = True) -> Dataset:
    """Load a data SPEC as deterministic train/val/test splits of raw uint8 images.

    `download=False` (or EDGECNN_OFFLINE=1) turns a missing torchvision dataset into an error that
    says where to put its files instead of trying the network.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise BadInputError(f"empty data SPEC: use one of {', '.join(DATA_SPECS)}")
    spec = spec.strip()
    kind, _, argument = spec.partition(":")
    kind = kind.lower()
    root = Path(data_root).expanduser() if data_root else default_data_root()
    download = download and not offline_requested()
    if kind == "digits" and not argument:
        return _load_digits(seed)
    if kind in ("mnist", "fashion-mnist", "fashion_mnist", "fashionmnist") and not argument:
        name = "mnist" if kind == "mnist" else "fashion-mnist"
        return _load_torchvision_idx(name, root, seed, download)
    if kind in ("cifar10", "cifar-10") and not argument:
        return _load_cifar10(root, seed, download)
    if kind == "idx":
        return load_idx_folder(_folder_argument(spec, argument), seed=seed, spec=spec)
    if kind == "imagefolder":
        return load_image_folder(_folder_argument(spec, argument), seed=seed, spec=spec)
    raise BadInputError(f"unknown data SPEC {spec!r}: use one of {', '.join(DATA_SPECS)}")


def _folder_argument(spec: str, argument: str) -> Path:
    if not argument:
        raise BadInputError(f"data SPEC {spec!r} needs a folder, e.g. {spec.split(':')[0]}:path/to/dir")
    folder = Path(argument).expanduser()
    if not folder.is_dir():
        raise BadInputError(f"data folder {str(folder)!r} does not exist or is not a folder (from SPEC {spec!r})")
    return folder


# --------------------------------------------------------------------------------------- splits


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices for each fraction, drawn per class so every split keeps the class proportions."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    cumulative = np.cumsum(fractions) / np.sum(fractions)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        bounds = np.round(cumulative * len(members)).astype(int)
        start = 0
        for part, stop in zip(parts, bounds):
            part.append(members[start:stop])
            start = stop
    # Sorted, so the order of samples inside a split does not depend on class iteration order.
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def class_balanced_sample(labels: Sequence[int] | np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """`n` indices (all of them if fewer), as even across classes as the data allows; deterministic.

    Classes are visited round-robin, each in its own seeded random order; a class that runs out
    leaves its share to the others. Calibration for INT8 uses this (300 images by default).
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        n = len(labels)
    rng = np.random.default_rng(seed)
    queues = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        queues.append(list(members[rng.permutation(len(members))]))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for queue in queues:
            if depth < len(queue):
                chosen.append(int(queue[depth]))
                if len(chosen) == n:
                    break
        depth += 1
    return np.asarray(chosen, dtype=np.int64)


def _pool_dataset(spec, images, labels, class_names, seed, hflip_ok=False) -> Dataset:
    train, val, test = stratified_split(labels, POOL_FRACTIONS, seed)
    return Dataset(
        spec=spec, class_names=tuple(class_names), seed=seed, hflip_ok=hflip_ok,
        train=Split(images[train], labels[train]), val=Split(images[val], labels[val]),
        test=Split(images[test], labels[test]),
    )


def _train_test_dataset(spec, train_images, train_labels, test_images, test_labels, class_names, seed,
                        hflip_ok=False) -> Dataset:
    train, val = stratified_split(train_labels, (1.0 - VAL_FRACTION, VAL_FRACTION), seed)
    return Dataset(
        spec=spec, class_names=tuple(class_names), seed=seed, hflip_ok=hflip_ok,
        train=Split(train_images[train], train_labels[train]),
        val=Split(train_images[val], train_labels[val]),
        test=Split(np.asarray(test_images), np.asarray(test_labels, dtype=np.int64)),
    )


# --------------------------------------------------------------------------------------- digits


def _load_digits(seed: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        from edgecnn.errors import MissingDependencyError

        raise MissingDependencyError("scikit-learn", "train", "the digits dataset") from exc
    bunch = load_digits()
    # 0..16 ink levels -> 0..255 pixels, rounded so 16 maps exactly to 255.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    return _pool_dataset("digits", images, labels, [str(c) for c in bunch.target_names], seed)


# ------------------------------------------------------------------------------------------ IDX

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
        return _train_test_dataset(spec, train_images, train_labels, test_images, test_labels, names, seed)
    images, labels = arrays[0]
    return _pool_dataset(spec, images, labels, names, seed)


def _idx_class_names(folder: Path, num_classes: int) -> tuple[str, ...]:
    # An optional classes.txt (one name per line) names the labels; otherwise they are numbers.
    names_file = folder / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(names) >= num_classes:
            return tuple(names)
        raise BadInputError(f"{names_file} names {len(names)} classes but the labels go up to {num_classes - 1}")
    return tuple(str(i) for i in range(num_classes))


# ------------------------------------------------------------------------ torchvision downloads

_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot")
_TORCHVISION_IDX = {
    # spec: (torchvision class, folder torchvision uses under the root, class names)
    "mnist": ("MNIST", "MNIST", tuple(str(i) for i in range(10))),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", _FASHION_CLASSES),
}
_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz")


def _load_torchvision_idx(name: str, root: Path, seed: int, download: bool) -> Dataset:
    class_name, folder_name, class_names = _TORCHVISION_IDX[name]
    raw = root / folder_name / "raw"

    def complete() -> bool:
        return find_idx_pair(raw, "train") is not None and find_idx_pair(raw, "t10k") is not None

    if not complete():
        where = f"put {', '.join(_IDX_FILES)} in {raw}/ (or pass --data idx:DIR for a folder that has them)"
        if not download:
            raise BadInputError(f"{name} is not in {raw}: {where}")
        try:
            import torchvision.datasets as tv_datasets

            dataset_class = getattr(tv_datasets, class_name)
            dataset_class(str(root), train=True, download=True)
            dataset_class(str(root), train=False, download=True)
        except ImportError:
            raise BadInputError(f"{name} needs torchvision to download; or {where}") from None
        except Exception:  # noqa: BLE001 - offline: every mirror fails in its own way
            raise BadInputError(f"{name} could not be downloaded (offline?): {where}") from None
        if not complete():
            raise BadInputError(f"{name} download left no IDX files in {raw}: {where}")
    dataset = load_idx_folder(raw, seed=seed, spec=name, class_names=class_names)
    return dataset


def _load_cifar10(root: Path, seed: int, download: bool) -> Dataset:
    folder = root / "cifar-10-batches-py"
    where = (f"put cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar.html) in {root}/,"
             f" or its extracted cifar-10-batches-py/ folder there")
    archive = root / "cifar-10-python.tar.gz"
    if not download and not folder.is_dir() and not archive.is_file():
        # Said before importing torchvision: the answer does not need it, and the import is slow.
        raise BadInputError(f"cifar10 is not in {folder}: {where}")
    try:
        import torchvision.datasets as tv_datasets
    except ImportError:
        raise BadInputError(f"cifar10 needs torchvision (pip install 'edgecnn[train]'); {where}") from None
    try:
        train = tv_datasets.CIFAR10(str(root), train=True, download=False)
        test = tv_datasets.CIFAR10(str(root), train=False, download=False)
    except RuntimeError:
        if not download:
            raise BadInputError(f"cifar10 is not in {folder}: {where}") from None
        try:
            train = tv_datasets.CIFAR10(str(root), train=True, download=True)
            test = tv_datasets.CIFAR10(str(root), train=False, download=True)
        except Exception:  # noqa: BLE001 - offline
            raise BadInputError(f"cifar10 could not be downloaded (offline?): {where}") from None
    return _train_test_dataset(
        "cifar10",
        np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets, dtype=np.int64),
        tuple(train.classes), seed, hflip_ok=True,
    )


# ---------------------------------------------------------------------------------- imagefolder


def load_image_folder(folder: str | Path, *, seed: int = 0, spec: str | None = None) -> Dataset:
    """One sub-folder per class (or train/ val/ test/ folders, each with one sub-folder per class)."""
    folder = Path(folder)
    spec = spec or f"imagefolder:{folder}"
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_folders = {SPLIT_FOLDER_NAMES[p.name.lower()]: p for p in subfolders
                     if p.name.lower() in SPLIT_FOLDER_NAMES}
    if "train" in split_folders and len(split_folders) == len(subfolders) and len(split_folders) >= 2:
        return _load_presplit_folder(folder, split_folders, seed, spec)
    class_names, files, labels = _scan_class_folders(folder)
    images = _read_images(files)
    return _pool_dataset(spec, images, np.asarray(labels, dtype=np.int64), class_names, seed, hflip_ok=True)


def _load_presplit_folder(folder: Path, split_folders: dict[str, Path], seed: int, spec: str) -> Dataset:
    class_names, train_files, train_labels = _scan_class_folders(split_folders["train"])
    splits = {}
    for name in ("val", "test"):
        if name in split_folders:
            names, files, labels = _scan_class_folders(split_folders[name], class_names)
            splits[name] = (files, labels)
    all_files = train_files + [f for files, _ in splits.values() for f in files]
    images = _read_images(all_files)
    train_images = images[: len(train_files)]
    train_labels = np.asarray(train_labels, dtype=np.int64)
    offset = len(train_files)
    arrays = {}
    for name, (files, labels) in splits.items():
        arrays[name] = Split(images[offset : offset + len(files)], np.asarray(labels, dtype=np.int64))
        offset += len(files)
    if "val" not in arrays:
        train_idx, val_idx = stratified_split(train_labels, (1.0 - VAL_FRACTION, VAL_FRACTION), seed)
        arrays["val"] = Split(train_images[val_idx], train_labels[val_idx])
        train_images, train_labels = train_images[train_idx], train_labels[train_idx]
    if "test" not in arrays:
        # No test folder: the validation folder is split in two, so test stays unseen.
        val = arrays["val"]
        val_idx, test_idx = stratified_split(val.labels, (0.5, 0.5), seed)
        arrays["val"], arrays["test"] = val.subset(val_idx), val.subset(test_idx)
    return Dataset(spec=spec, class_names=tuple(class_names), seed=seed, hflip_ok=True,
                   train=Split(train_images, train_labels), val=arrays["val"], test=arrays["test"])


def _scan_class_folders(folder: Path, class_names: Sequence[str] | None = None):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BadInputError(f"image folder {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    if class_names is not None:
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise BadInputError(f"{folder} has classes not in the training folder: {', '.join(unknown)}")
    names = list(class_names) if class_names is not None else classes
    files: list[Path] = []
    labels: list[int] = []
    for name in classes:
        class_files = sorted(
            p for p in (folder / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not class_files and class_names is None:
            raise BadInputError(
                f"class folder {folder / name} has no images ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:4])}, ...)"
            )
        files.extend(class_files)
        labels.extend([names.index(name)] * len(class_files))
    return names, files, labels


def _read_images(files: Sequence[Path]) -> np.ndarray:
    """Decode image files to one uint8 array; mixed sizes are brought to the most common size."""
    try:
        from PIL import Image
    except ImportError:
        raise BadInputError("reading an image folder needs Pillow: pip install 'edgecnn[train]'") from None
    decoded = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                decoded.append(image.copy())
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
            raise BadInputError(f"cannot read image {path}: {exc}") from None
    grayscale = all(im.mode in ("1", "L", "I;16", "I", "F", "LA") for im in decoded)
    mode = "L" if grayscale else "RGB"
    sizes = [im.size for im in decoded]
    # The most common size wins (ties go to the larger); the others are resized to it with PIL's
    # bilinear filter. Recorded data stays uint8, so one PreprocessSpec still describes everything.
    common = max(set(sizes), key=lambda s: (sizes.count(s), s[0] * s[1]))
    arrays = []
    for image in decoded:
        image = image.convert(mode)
        if image.size != common:
            image = image.resize(common, Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    return np.stack(arrays)


# ------------------------------------------------------------------------------- preprocessing


def preprocess_for(model_spec, dataset: Dataset, *, pretrained: bool, data_spec: str | None = None) -> PreprocessSpec:
    """The PreprocessSpec a model uses on a dataset.

    Size is the larger of the data's side and the model's minimum; channels are the model's.
    Normalisation: the model's published mean/std when starting from published weights (they were
    trained that way), the training split's own statistics when training from scratch.
    """
    size = model_spec.input_size_for(dataset.image_size)
    channels = model_spec.channels
    base = PreprocessSpec(
        size=size, channels=channels, mean=(0.0,) * channels, std=(1.0,) * channels,
        class_names=dataset.class_names, data=data_spec or dataset.spec,
    )
    if pretrained:
        mean, std = published_normalization(model_spec)
        return base.with_normalization(mean, std, "model")
    mean, std = dataset_statistics(dataset.train.images, base)
    return base.with_normalization(mean, std, "dataset")


def published_normalization(model_spec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std the model's published weights expect.

    torchvision's GoogLeNet and Inception v3 weights come from TensorFlow ports and are run with
    `transform_input=True`, which maps ImageNet-normalised input to (x - 0.5) / 0.5; the zoo builds
    them without that switch, so the same arithmetic moves into the preprocessing.
    """
    weights = getattr(model_spec, "weights", None) or ""
    if weights.startswith(("torchvision:GoogLeNet_Weights", "torchvision:Inception_V3_Weights")):
        return (0.5,) * 3, (0.5,) * 3
    return tuple(model_spec.mean), tuple(model_spec.std)


def dataset_statistics(images: np.ndarray, spec: PreprocessSpec, max_images: int = 10000, seed: int = 0):
    """Per-channel mean/std of the images as the model sees them (resized, channel-converted, [0,1])."""
    if len(images) > max_images:
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))]
    total = np.zeros(spec.channels, dtype=np.float64)
    total_sq = np.zeros(spec.channels, dtype=np.float64)
    count = 0
    for start in range(0, len(images), 1024):
        pixels = spec.to_unit_range(images[start : start + 1024]).astype(np.float64)
        total += pixels.sum(axis=(0, 2, 3))
        total_sq += (pixels**2).sum(axis=(0, 2, 3))
        count += pixels.shape[0] * pixels.shape[2] * pixels.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std < 1e-3, 1.0, std)  # a constant channel: leave it unscaled
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def preprocessed_split(dataset: Dataset, split: str, preprocess: PreprocessSpec,
                       limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A split as model input: float32 NCHW images and int64 labels (a class-balanced `limit` if given)."""
    part = dataset.split(split)
    if limit is not None and limit < len(part):
        part = part.subset(np.sort(class_balanced_sample(part.labels, limit, seed)))
    return preprocess.apply(part.images), part.labels.astype(np.int64)


def calibration_images(dataset: Dataset, preprocess: PreprocessSpec, n: int = 300, seed: int = 0,
                       split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """INT8 calibration set: a class-balanced `n` (or all if fewer) of a split, preprocessed."""
    part = dataset.split(split)
    indices = class_balanced_sample(part.labels, n, seed)
    return preprocess.apply(part.images[indices]), part.labels[indices].astype(np.int64)


__all__ = [
    "DATA_SPECS",
    "Dataset",
    "Split",
    "calibration_images",
    "class_balanced_sample",
    "dataset_statistics",
    "default_data_root",
    "find_idx_pair",
    "load_data",
    "load_idx_folder",
    "load_image_folder",
    "offline_requested",
    "preprocess_for",
    "preprocessed_split",
    "published_normalization",
    "read_idx",
    "stratified_split",
]
