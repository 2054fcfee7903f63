"""Deterministic splits and samples: stratified train/val/test, class-balanced subsets (calibration)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgecnn.data.dataset import Dataset, Split

# Held out of a dataset that ships as a single pool: 70 % train, 15 % validation, 15 % test.
POOL_FRACTIONS = (0.70, 0.15, 0.15)
# Validation taken out of an official training split (the official test split stays the test).
VAL_FRACTION = 0.10

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


def pool_dataset(spec: str, pool: Split, class_names: Sequence[str], *, seed: int, hflip_ok: bool = False) -> Dataset:
    """One pool of images split 70/15/15 into train, validation and test."""
    train, val, test = stratified_split(pool.labels, POOL_FRACTIONS, seed)
    return Dataset(spec=spec, class_names=tuple(class_names), seed=seed, hflip_ok=hflip_ok,
                   train=pool.subset(train), val=pool.subset(val), test=pool.subset(test))


def train_test_dataset(spec: str, train: Split, test: Split, class_names: Sequence[str], *, seed: int,
                       hflip_ok: bool = False) -> Dataset:
    """An official train/test pair; validation is taken out of the training split."""
    kept, val = stratified_split(train.labels, (1.0 - VAL_FRACTION, VAL_FRACTION), seed)
    return Dataset(
        spec=spec, class_names=tuple(class_names), seed=seed, hflip_ok=hflip_ok,
        train=train.subset(kept), val=train.subset(val),
        test=Split(np.asarray(test.images), np.asarray(test.labels, dtype=np.int64)),
    )


def whole_pool(dataset: Dataset) -> Split:
    """Every sample of a data set (train, then val, then test) as one Split: for data a model was not trained on."""
    parts = [dataset.train, dataset.val, dataset.test]
    images = parts[0].images
    if hasattr(images, "concat"):  # image files: join the sequences, decode nothing
        for part in parts[1:]:
            images = images.concat(part.images)
    else:
        images = np.concatenate([p.images for p in parts])
    return Split(images, np.concatenate([p.labels for p in parts]).astype(np.int64))
