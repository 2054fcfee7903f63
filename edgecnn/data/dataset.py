"""A data set in memory: raw uint8 train/val/test splits and class names, and where data lives on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.errors import BadInputError

DATA_SPECS = ("digits", "mnist", "fashion-mnist", "cifar10", "idx:DIR", "imagefolder:DIR")

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
