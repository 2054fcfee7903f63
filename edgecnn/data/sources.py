"""A data SPEC to a Dataset: the dispatcher, and the built-in sources (digits, MNIST, Fashion-MNIST, CIFAR-10).

torch is not imported here at module level: only the torchvision downloads need it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.dataset import DATA_SPECS, Dataset, Split, default_data_root, offline_requested
from edgecnn.data.idx import find_idx_pair, load_idx_folder
from edgecnn.data.imagefolder import load_image_folder
from edgecnn.data.splits import pool_dataset, train_test_dataset
from edgecnn.errors import BadInputError

def load_data(spec, *, data_root: str | Path | None = None, seed: int = 0, download: bool = True,
              class_names=None) -> Dataset:
    """Load a data SPEC (or an edgecnn.data spec object, or `Images` in memory) as deterministic
    train/val/test splits of raw uint8 images.

    `class_names`: the model's class list; an image folder's class folders are looked up in it
    (edgecnn.data.imagefolder). Image folders stay files until a sample of them is preprocessed.

    `download=False` (or EDGECNN_OFFLINE=1) turns a missing torchvision dataset into an error that
    says where to put its files instead of trying the network.
    """
    from edgecnn.data.specs import DataSpec, Images

    if isinstance(spec, Images):  # images in memory (the Python API): used whole, as given
        return spec.dataset(seed=seed, class_names=class_names)
    if isinstance(spec, DataSpec):
        spec = str(spec)
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
        return load_image_folder(_folder_argument(spec, argument), seed=seed, spec=spec, class_names=class_names)
    raise BadInputError(f"unknown data SPEC {spec!r}: use one of {', '.join(DATA_SPECS)}")


def _folder_argument(spec: str, argument: str) -> Path:
    if not argument:
        raise BadInputError(f"data SPEC {spec!r} needs a folder, e.g. {spec.split(':')[0]}:path/to/dir")
    folder = Path(argument).expanduser()
    if not folder.is_dir():
        raise BadInputError(f"data folder {str(folder)!r} does not exist or is not a folder (from SPEC {spec!r})")
    return folder


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
    return pool_dataset("digits", Split(images, labels), [str(c) for c in bunch.target_names], seed=seed)


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
    return train_test_dataset(
        "cifar10",
        Split(np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets, dtype=np.int64)),
        Split(np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets, dtype=np.int64)),
        tuple(train.classes), seed=seed, hflip_ok=True,
    )
