"""Model input from a data set: the PreprocessSpec a model uses on it, preprocessed splits, calibration sets."""

from __future__ import annotations

import numpy as np

from edgecnn.data.dataset import Dataset, Split
from edgecnn.data.splits import class_balanced_sample
from edgecnn.preprocess import PreprocessSpec

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
    return preprocessed_sample(dataset.split(split), preprocess, limit=limit, seed=seed)


def preprocessed_sample(part: Split, preprocess: PreprocessSpec, *, limit: int | None = None,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Split as model input (a class-balanced `limit` if given): only the chosen images are decoded."""
    if limit is not None and limit < len(part):
        part = part.subset(np.sort(class_balanced_sample(part.labels, limit, seed)))
    return preprocess.apply(part.images), part.labels.astype(np.int64)


def calibration_images(dataset: Dataset, preprocess: PreprocessSpec, n: int = 300, seed: int = 0,
                       split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """INT8 calibration set: a class-balanced `n` (or all if fewer) of a split, preprocessed."""
    part = dataset.split(split)
    indices = class_balanced_sample(part.labels, n, seed)
    return preprocess.apply(part.images[indices]), part.labels[indices].astype(np.int64)
