"""Accuracy and logits of a model on preprocessed or raw images (single process or sharded over ranks)."""

from __future__ import annotations

import numpy as np
import torch

from edgecnn.data import Split
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec
from edgecnn.train.ddp import DistributedContext


def predict_logits(model: torch.nn.Module, inputs: np.ndarray, *, batch_size: int = 256,
                   device: torch.device | str | None = None) -> np.ndarray:
    """fp32 logits for preprocessed float32 NCHW inputs (the reference for export parity)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size])).to(device)
            outputs.append(model(batch).float().cpu().numpy())
    model.train(was_training)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels[:, None]).any(dim=1).sum())


def evaluate(model: torch.nn.Module, split: Split, preprocess: PreprocessSpec, *, batch_size: int = 256,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """Top-1 and top-5 accuracy in percent on a split of raw images."""
    correct1, correct5, total = count_correct(model, split, preprocess, np.arange(len(split)),
                                              batch_size=batch_size, device=device)
    if total == 0:
        raise BadInputError("cannot evaluate on an empty split")
    return 100.0 * correct1 / total, 100.0 * correct5 / total


def count_correct(model, split: Split, preprocess: PreprocessSpec, indices: np.ndarray, *, batch_size: int,
                  device) -> tuple[int, int, int]:
    """(top-1 hits, top-5 hits, samples) over `indices` of a split."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct1 = correct5 = 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            inputs = torch.from_numpy(preprocess.apply(split.images[chunk])).to(device)
            labels = torch.from_numpy(split.labels[chunk].astype(np.int64)).to(device)
            logits = model(inputs)
            correct1 += topk_correct(logits, labels, 1)
            correct5 += topk_correct(logits, labels, 5)
    model.train(was_training)
    return correct1, correct5, len(indices)


def evaluate_sharded(model, split: Split, preprocess: PreprocessSpec, context: DistributedContext,
                     batch_size: int = 256) -> tuple[float, float]:
    """Each rank evaluates every world_size-th sample; the counts are summed over the ranks."""
    indices = np.arange(context.rank, len(split), context.world_size)
    counts = count_correct(model, split, preprocess, indices, batch_size=batch_size, device=context.device)
    if context.distributed:
        tensor = context.all_reduce(torch.tensor(counts, dtype=torch.float64, device=context.device))
        counts = tuple(int(v) for v in tensor.tolist())
    correct1, correct5, total = counts
    if total == 0:
        return 0.0, 0.0
    return 100.0 * correct1 / total, 100.0 * correct5 / total
