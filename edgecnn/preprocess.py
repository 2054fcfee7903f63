"""The preprocessing spec: how raw uint8 images become the float32 NCHW tensor a model takes.

Numpy only, on purpose: the device side (bench, verify on a Raspberry Pi with only a TFLite
runtime) reproduces exactly what training and export did, without torch.

The resize of pixel arrays is bilinear (or bicubic, as many timm models were trained) with half-pixel
centres and no antialiasing, the same arithmetic as `torch.nn.functional.interpolate(mode=...,
align_corners=False, antialias=False)`, written as two small interpolation matrices so one matrix product
per axis does the whole batch. Photo files are resized by PIL with the same named filter (edgecnn.data.photos),
as torchvision's and timm's eval transforms do on PIL images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgecnn.errors import BadInputError

RESIZE_METHODS = ("bilinear", "bicubic")
# torch's upsample_bicubic2d (and OpenCV) use this cubic convolution coefficient.
_CUBIC_A = -0.75
# ITU-R BT.601 luma, the weights PIL's convert("L") uses: RGB data fed to a 1-channel model.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# The batch is processed in chunks so a 60,000-image split never needs one giant float copy.
_CHUNK = 2048
# Image files are decoded this many at a time (a chunk of 224 px crops is ~10 MB).
_FILE_CHUNK = 64


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to turn raw images into model input, recorded in checkpoints and bundles."""

    size: int  # output side: images become size x size
    channels: int  # channels the model takes (grayscale is repeated, RGB turned to luma for 1)
    mean: tuple[float, ...]  # per model channel, applied to pixels scaled to [0, 1]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    data: str | None = None  # the data SPEC the model was trained on ("digits", "idx:DIR", ...)
    resize: str = "bilinear"
    # Where mean/std came from: "dataset" (measured on the training split), "model" (the
    # published weights' normalization) or "manual".
    normalization: str = "manual"
    # Real photos: resize the shorter side to this, then centre-crop `size` (None for specs that predate
    # it). Image files (edgecnn.data.photos.ImageFiles) are cropped so when decoded; pixel arrays are
    # taken as given and resized whole to size x size.
    resize_shorter: int | None = None

    def __post_init__(self):
        _check_int("size", self.size, minimum=1)
        _check_int("channels", self.channels, minimum=1)
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "channels", int(self.channels))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or not all(_is_number(v) for v in values):
                raise BadInputError(f"preprocess spec: {name} must be a list of numbers, got {values!r}")
            if len(values) != self.channels:
                raise BadInputError(
                    f"preprocess spec: {name} has {len(values)} values but channels is {self.channels}"
                )
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if any(s <= 0 or not math.isfinite(s) for s in self.std):
            raise BadInputError(f"preprocess spec: std must be positive, got {self.std}")
        if not isinstance(self.class_names, (tuple, list)) or not all(
            isinstance(c, str) for c in self.class_names
        ):
            raise BadInputError("preprocess spec: class_names must be a list of strings")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.data is not None and not isinstance(self.data, str):
            raise BadInputError(f"preprocess spec: data must be a string, got {self.data!r}")
        if self.resize_shorter is not None:
            _check_int("resize_shorter", self.resize_shorter, minimum=1)
            object.__setattr__(self, "resize_shorter", int(self.resize_shorter))
        if self.resize not in RESIZE_METHODS:
            raise BadInputError(
                f"preprocess spec: resize must be one of {', '.join(RESIZE_METHODS)}, got {self.resize!r}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one preprocessed image."""
        return (self.channels, self.size, self.size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (the checkpoint and the bundle manifest store this)."""
        record = {
            "size": self.size,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
            "data": self.data,
            "resize": self.resize,
            "normalization": self.normalization,
            "input_shape": list(self.input_shape),
            "dtype": "float32",
            "layout": "NCHW",
            "pixel_scale": "uint8 / 255; float images as given, in [0, 1]",
        }
        if self.resize_shorter is not None:  # only when set, so older manifests keep their exact shape
            record["resize_shorter"] = self.resize_shorter
        return record

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> "PreprocessSpec":
        """Rebuild from `to_dict()` output; a malformed dict raises BadInputError naming the field."""
        if not isinstance(payload, Mapping):
            raise BadInputError(f"preprocess spec must be a mapping, got {type(payload).__name__}")
        for key in ("size", "channels", "mean", "std"):
            if key not in payload:
                raise BadInputError(f"preprocess spec: missing field {key!r}")
        return cls(
            size=payload["size"],
            channels=payload["channels"],
            mean=_as_tuple("mean", payload["mean"]),
            std=_as_tuple("std", payload["std"]),
            class_names=_as_tuple("class_names", payload.get("class_names", ())),
            data=payload.get("data"),
            resize=payload.get("resize", "bilinear"),
            normalization=str(payload.get("normalization", "manual")),
            resize_shorter=payload.get("resize_shorter"),
        )

    def with_normalization(self, mean: Sequence[float], std: Sequence[float], source: str) -> "PreprocessSpec":
        """A copy with other mean/std (one value is repeated over the channels)."""
        mean = tuple(mean) * self.channels if len(mean) == 1 else tuple(mean)
        std = tuple(std) * self.channels if len(std) == 1 else tuple(std)
        return PreprocessSpec(
            size=self.size, channels=self.channels, mean=mean, std=std, class_names=self.class_names,
            data=self.data, resize=self.resize, normalization=source, resize_shorter=self.resize_shorter,
        )

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Raw images (N,H,W) or (N,H,W,C) -> normalised float32 (N, channels, size, size).

        uint8 pixels are scaled by 1/255; float pixels are taken as already in [0, 1]. Lazily decoded
        image files (anything with `decode_for(spec)`) are decoded a chunk at a time.
        """
        pixels = self.to_unit_range(images)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        inv_std = (1.0 / np.asarray(self.std, dtype=np.float32)).reshape(1, -1, 1, 1)
        pixels -= mean
        pixels *= inv_std
        return pixels

    def to_unit_range(self, images: np.ndarray) -> np.ndarray:
        """Resize and channel-convert, pixels in [0, 1], before mean/std: (N, channels, size, size)."""
        if hasattr(images, "decode_for"):
            return self._files_to_unit_range(images)
        images = np.asarray(images)
        if images.dtype == np.uint8:
            pixel_scale = np.float32(1.0 / 255.0)
        elif np.issubdtype(images.dtype, np.floating):
            # Float images come from decoders and cameras already scaled to [0, 1] (torchvision's
            # convention); scaling them again would silently feed the model near-black input.
            pixel_scale = np.float32(1.0)
        else:
            raise BadInputError(f"images must be uint8 pixels or floats in [0, 1], got {images.dtype}")
        if images.ndim == 2:  # one grayscale image
            images = images[None]
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise BadInputError(
                f"images must be (N,H,W) or (N,H,W,C) with C in 1, 3, 4; got shape {tuple(images.shape)}"
            )
        n, height, width, _ = images.shape
        matrix = bicubic_matrix if self.resize == "bicubic" else bilinear_matrix
        rows = matrix(height, self.size)
        cols_t = matrix(width, self.size).T.copy()
        out = np.empty((n, self.channels, self.size, self.size), dtype=np.float32)
        for start in range(0, n, _CHUNK):
            chunk = self._convert_channels(images[start : start + _CHUNK])  # (n, C, H, W) float32
            # rows @ x @ cols^T on the two trailing axes: resize height, then width.
            resized = np.matmul(np.matmul(rows, chunk), cols_t)
            out[start : start + len(chunk)] = resized
        if pixel_scale != 1.0:
            out *= pixel_scale
        return out

    def _files_to_unit_range(self, files) -> np.ndarray:
        # Decoded pixels live one chunk at a time; only the float output holds every image.
        out = np.empty((len(files), self.channels, self.size, self.size), dtype=np.float32)
        for start in range(0, len(files), _FILE_CHUNK):
            chunk = files[start : start + _FILE_CHUNK]
            out[start : start + len(chunk)] = self.to_unit_range(chunk.decode_for(self))
        return out

    def _convert_channels(self, images: np.ndarray) -> np.ndarray:
        source_channels = images.shape[-1]
        if source_channels == 4:  # RGBA: drop alpha
            images = images[..., :3]
            source_channels = 3
        pixels = images.astype(np.float32).transpose(0, 3, 1, 2)  # (n, C, H, W)
        if source_channels == self.channels:
            return np.ascontiguousarray(pixels)
        if source_channels == 1:
            return np.ascontiguousarray(np.repeat(pixels, self.channels, axis=1))
        if self.channels == 1:  # RGB -> luma
            return np.tensordot(_LUMA, pixels, axes=([0], [1]))[:, None].astype(np.float32)
        raise BadInputError(f"cannot turn {source_channels}-channel images into {self.channels} channels")


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 matrix M with M @ x == bilinear resize of x along one axis.

    Half-pixel centres (align_corners=False), source coordinates below 0 clamped to 0 and the upper
    neighbour clamped to the last pixel: the rule of torch's upsample_bilinear2d without antialias.
    """
    def taps(source: float):
        source = max(source, 0.0)
        low = min(int(math.floor(source)), in_size - 1)
        weight_high = float(np.float32(source) - np.float32(low))
        return ((low, 1.0 - weight_high), (min(low + 1, in_size - 1), weight_high))

    return _resize_matrix(in_size, out_size, taps)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 matrix of torch's bicubic resize (align_corners=False, no antialias).

    Four taps of the cubic convolution kernel (A = -0.75) around the half-pixel source coordinate, which
    is not clamped at 0 (unlike bilinear); taps outside the image read the edge pixel.
    """
    def taps(source: float):
        low = math.floor(source)
        weights = _cubic_weights(source - low)
        return tuple((min(max(low + offset, 0), in_size - 1), w) for offset, w in zip((-1, 0, 1, 2), weights))

    return _resize_matrix(in_size, out_size, taps)


def _resize_matrix(in_size: int, out_size: int, taps) -> np.ndarray:
    """The matrix whose row i holds the `taps(source coordinate)` (index, weight) pairs of output pixel i."""
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    if in_size == out_size:
        np.fill_diagonal(matrix, 1.0)
        return matrix.astype(np.float32)
    # torch computes the scale in float32 as in/out and the source index in float32 too.
    scale = np.float32(in_size) / np.float32(out_size)
    for i in range(out_size):
        source = float((np.float32(i) + np.float32(0.5)) * scale - np.float32(0.5))
        for index, weight in taps(source):
            matrix[i, index] += weight
    return matrix.astype(np.float32)


def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    a = _CUBIC_A

    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BadInputError(f"preprocess spec: {name} must be an integer >= {minimum}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _as_tuple(name: str, value: Any) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise BadInputError(f"preprocess spec: {name} must be a list, got {value!r}")
    return tuple(value)


__all__ = ["PreprocessSpec", "bicubic_matrix", "bilinear_matrix", "RESIZE_METHODS"]
