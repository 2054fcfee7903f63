"""Data SPECs as Python objects, for the Python API: `edgecnn.data.ImageFolder("photos/")` is the CLI's
`imagefolder:photos/`, and `Images(array)` is data no file holds: images already in memory (numpy arrays,
PIL images), for INT8 calibration, the golden set and verification.

A file-backed spec is only its SPEC string (`str(spec)`), so it travels to a device like `--data`; an
`Images` is loaded here, by `load_data`, and cannot leave this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from edgecnn.errors import BadInputError


class DataSpec:
    """A data SPEC by name; `str(spec)` is what the CLI's --data / --calib-data take."""

    spec: str

    def __str__(self) -> str:
        return self.spec


class _Named(DataSpec):
    def __init__(self, spec: str):
        self.spec = spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataSpec) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class Digits(_Named):
    """scikit-learn's bundled 8x8 digits (offline)."""

    def __init__(self) -> None:
        super().__init__("digits")


class Mnist(_Named):
    """MNIST (torchvision download into the data root)."""

    def __init__(self) -> None:
        super().__init__("mnist")


class FashionMnist(_Named):
    """Fashion-MNIST (torchvision download into the data root)."""

    def __init__(self) -> None:
        super().__init__("fashion-mnist")


class Cifar10(_Named):
    """CIFAR-10 (torchvision download into the data root)."""

    def __init__(self) -> None:
        super().__init__("cifar10")


class _Folder(_Named):
    kind = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"{self.kind}:{self.path}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class ImageFolder(_Folder):
    """Photos of any size, one sub-folder per class (mapped through the model's class list when it has one)."""

    kind = "imagefolder"


class Idx(_Folder):
    """MNIST-format IDX files (gzipped or not) in a folder."""

    kind = "idx"


@dataclass(frozen=True, eq=False)
class Images:
    """Images in memory: uint8 pixels (N, H, W) or (N, H, W, C), or any iterable of such images (PIL too).

    Labels are optional: without them a verification checks agreement with the reference only. Floats
    in [0, 1] are taken as scaled pixels. Used whole (no train/test split matters for data the model
    was not trained on), and never sent to a device.
    """

    images: Any
    labels: Optional[Sequence[int]] = None
    class_names: Optional[Sequence[str]] = None
    name: str = "images"

    @property
    def spec(self) -> str:
        return f"{self.name} (in memory)"

    def __str__(self) -> str:
        return self.spec

    def dataset(self, *, seed: int = 0, class_names: Optional[Sequence[str]] = None):
        """The images as a Dataset (edgecnn.data.Dataset), their classes those given, else the model's."""
        from edgecnn.data.dataset import Split
        from edgecnn.data.splits import pool_dataset

        pixels = _pixels(self.images)
        names = tuple(self.class_names or class_names or ("unlabeled",))
        if self.labels is None:
            labels = np.full(len(pixels), -1, dtype=np.int64)
        else:
            labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
            if len(labels) != len(pixels):
                raise BadInputError(f"{len(pixels)} images but {len(labels)} labels")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
                raise BadInputError(f"labels must be class indices 0..{len(names) - 1} (of {len(names)} classes)")
        return pool_dataset(self.spec, Split(pixels, labels), names, seed=seed)


def _pixels(images: Any) -> np.ndarray:
    """(N, H, W[, C]) uint8 from an array or an iterable of same-sized images."""
    if isinstance(images, np.ndarray):
        array = images
    else:
        listed = [np.asarray(image) for image in images]
        if not listed:
            raise BadInputError("no images given")
        shapes = {a.shape for a in listed}
        if len(shapes) > 1:
            raise BadInputError(f"images of {len(shapes)} different shapes: resize them to one size, or put them in "
                                "folders (edgecnn.data.ImageFolder), which are resized and cropped as the model asks")
        array = np.stack(listed)
    if array.ndim not in (3, 4) or len(array) == 0:
        raise BadInputError(f"images must be an array (N, H, W) or (N, H, W, C), got shape {list(array.shape)}")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise BadInputError("images hold NaN or infinite values")
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        array = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def as_data(value: Any) -> str | Images | None:
    """What the library's data arguments take: a SPEC string, an `Images`, or None.

    A DataSpec becomes its string; an array or a list of images becomes `Images`.
    """
    if value is None or isinstance(value, (str, Images)):
        return value
    if isinstance(value, DataSpec):
        return str(value)
    if isinstance(value, Path):
        raise BadInputError(f"{value} is a path, not a data SPEC: use edgecnn.data.ImageFolder({str(value)!r})")
    if isinstance(value, np.ndarray) or isinstance(value, Iterable):
        return Images(value)
    raise BadInputError(f"cannot use a {type(value).__name__} as data: pass a SPEC string, an edgecnn.data spec "
                        "or images (a numpy array)")


__all__ = ["Cifar10", "DataSpec", "Digits", "FashionMnist", "Idx", "ImageFolder", "Images", "Mnist", "as_data"]
