"""Shared, cached inputs for the export and quantization tests: real digits, a tiny trained CNN.

Not a test module (pytest collects only test_*.py); cached so each is built once per session.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

SIZE = 32
INPUT_SHAPE = (3, SIZE, SIZE)
EPOCHS, BATCH, LR = 5, 64, 2e-2


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits at 32x32x3, normalised: (train_x, train_y, test_x, test_y)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = nn.functional.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = ((images.repeat(1, 3, 1, 1) - 0.5) / 0.5).numpy()
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    split = 1400
    return images[:split], labels[:split], images[split:], labels[split:]


def tiny_cnn() -> nn.Module:
    """Conv-BN-ReLU blocks with a depthwise conv: BN folding and per-channel weights matter."""

    def block(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
        return [conv, nn.BatchNorm2d(cout), act()]

    return nn.Sequential(
        *block(3, 16, stride=2),
        *block(16, 32, stride=2),
        *block(32, 32, groups=32, act=nn.ReLU6),
        *block(32, 64, k=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


@functools.lru_cache(maxsize=1)
def trained_tiny_cnn() -> nn.Module:
    """The tiny CNN trained on digits for a few seconds (about 95 % test accuracy)."""
    torch.manual_seed(0)
    model = tiny_cnn()
    train_x, train_y, _, _ = digits()
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = (len(x) + BATCH - 1) // BATCH
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=LR, total_steps=EPOCHS * steps_per_epoch)
    model.train()
    generator = torch.Generator().manual_seed(0)
    # One thread: on a shared 2-core machine a second OpenMP thread waits for a core at every
    # op, which makes this 20x slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(EPOCHS):
            for idx in torch.randperm(len(x), generator=generator).split(BATCH):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                optimiser.step()
                schedule.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def fit_on_digits(model: nn.Module, *, epochs: int, lr: float) -> nn.Module:
    """Plain Adam on the digits train split, batch 64, one thread (a second mostly waits on a shared machine)."""
    train_x, train_y, _, _ = digits()
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=generator).split(64):
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).argmax(1) == labels))
