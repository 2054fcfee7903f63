"""Image files decoded on demand: a folder's images as a lazy, array-like sequence.

An `ImageFiles` holds paths, not pixels: indexing with indices, a slice or a mask gives another
`ImageFiles`, so splits and samples are chosen before anything is decoded, and `PreprocessSpec`
decodes only the images it is asked to preprocess, a chunk at a time. Two ways to decode:

- the model records `resize_shorter` (real photos, ImageNet-style models): each image on its own,
  the shorter side resized to R with PIL's bilinear filter, then the centre S x S cropped —
  torchvision's `Resize(R)` + `CenterCrop(S)` on PIL images, exactly;
- otherwise (models trained on a folder of small images): every image brought to the folder's most
  common size, as the folder used to be read into one array, and the spec resizes the whole image.

Pillow is needed to decode, on the host and on a device alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.errors import BadInputError

_GRAY_MODES = ("1", "L", "I;16", "I", "F", "LA")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise BadInputError("reading image files needs Pillow: pip install pillow") from None
    return Image


def _open(path: Path):
    """The PIL image of one file, decoded; BadInputError naming the file when it cannot be read."""
    try:
        with _pil().open(path) as image:
            image.load()
            return image.copy()
    except BadInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        raise BadInputError(f"cannot read image {path}: {exc}") from None


def crop_geometry(width: int, height: int, size: int, shorter: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """((new width, new height), crop box) of resize-shorter-side-to-R then centre-crop S, as torchvision."""
    if width <= height:
        new_w, new_h = shorter, int(shorter * height / width)
    else:
        new_w, new_h = int(shorter * width / height), shorter
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return (new_w, new_h), (left, top, left + size, top + size)


def center_crop(image, *, size: int, shorter: int, channels: int, resize: str = "bilinear") -> np.ndarray:
    """One PIL image -> uint8 (S, S) luma or (S, S, 3) RGB: shorter side to `shorter` with PIL's `resize`
    filter (bilinear or bicubic, as the model's eval transform), then the centre crop."""
    Image = _pil()
    image = image.convert("L" if channels == 1 else "RGB")
    new_size, box = crop_geometry(image.width, image.height, size, shorter)
    if new_size != image.size:
        image = image.resize(new_size, Image.BICUBIC if resize == "bicubic" else Image.BILINEAR)
    return np.asarray(image.crop(box), dtype=np.uint8)


class _Catalog:
    """The files of one folder, and (read from the headers only when asked) their common size and mode."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = tuple(Path(p) for p in paths)
        self._layout: tuple[tuple[int, int], str] | None = None

    def layout(self) -> tuple[tuple[int, int], str]:
        """((width, height), mode) the whole-image decoding brings every file to."""
        if self._layout is None:
            Image = _pil()
            sizes, modes = [], []
            for path in self.paths:
                try:
                    with Image.open(path) as image:  # the header only: nothing is decoded
                        sizes.append(image.size)
                        modes.append(image.mode)
                except Exception as exc:  # noqa: BLE001
                    raise BadInputError(f"cannot read image {path}: {exc}") from None
            # The most common size wins (ties go to the larger); the others are resized to it.
            common = max(set(sizes), key=lambda s: (sizes.count(s), s[0] * s[1])) if sizes else (1, 1)
            mode = "L" if all(m in _GRAY_MODES for m in modes) else "RGB"
            self._layout = (common, mode)
        return self._layout


class ImageFiles:
    """A lazy (N, H, W[, C]) uint8 'array' of image files; see the module docstring."""

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: Sequence[Path] | _Catalog, indices: np.ndarray | None = None):
        self._catalog = paths if isinstance(paths, _Catalog) else _Catalog(paths)
        count = len(self._catalog.paths)
        self._indices = np.arange(count, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)

    @property
    def paths(self) -> list[Path]:
        return [self._catalog.paths[i] for i in self._indices]

    def __len__(self) -> int:
        return int(len(self._indices))

    @property
    def shape(self) -> tuple[int, ...]:
        (width, height), mode = self._catalog.layout()
        return (len(self), height, width) if mode == "L" else (len(self), height, width, 3)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._whole([self._indices[key]])[0]
        if isinstance(key, slice):
            return ImageFiles(self._catalog, self._indices[key])
        if isinstance(key, (list, np.ndarray)):
            key = np.asarray(key)
            if key.dtype == bool or np.issubdtype(key.dtype, np.integer):
                return ImageFiles(self._catalog, self._indices[key])
        return np.asarray(self)[key]  # anything else (ellipsis, tuples): as the decoded array would

    def __array__(self, dtype=None, copy=None):
        array = self._whole(self._indices)
        return array if dtype is None else array.astype(dtype)

    def concat(self, other: "ImageFiles") -> "ImageFiles":
        """Both sequences, in order (of the same folder)."""
        if other._catalog is not self._catalog:
            raise ValueError("ImageFiles of different folders cannot be joined")
        return ImageFiles(self._catalog, np.concatenate([self._indices, other._indices]))

    def decode_for(self, spec) -> np.ndarray:
        """uint8 pixels as `spec` takes them: S x S centre crops when it records resize_shorter, else whole images."""
        if spec.resize_shorter is None:
            return np.asarray(self)
        shape = (len(self), spec.size, spec.size) + ((3,) if spec.channels != 1 else ())
        out = np.empty(shape, dtype=np.uint8)
        for row, index in enumerate(self._indices):
            out[row] = center_crop(_open(self._catalog.paths[index]), size=spec.size,
                                   shorter=spec.resize_shorter, channels=spec.channels, resize=spec.resize)
        return out

    def _whole(self, indices) -> np.ndarray:
        Image = _pil()
        common, mode = self._catalog.layout()
        arrays = []
        for index in indices:
            image = _open(self._catalog.paths[index]).convert(mode)
            if image.size != common:
                image = image.resize(common, Image.BILINEAR)
            arrays.append(np.asarray(image, dtype=np.uint8))
        if not arrays:
            return np.zeros(self.shape, dtype=np.uint8)
        return np.stack(arrays)


__all__ = ["ImageFiles", "center_crop", "crop_geometry"]
