"""PyTorch fp32 reference logits of an in-memory model (what export checks every artifact against), and
the eval-mode guard every exporter runs a model under (below the backends: exporters and runners use it)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from edgecnn.compare import Progress, batched


def torch_logits(
    model, samples: np.ndarray, *, batch_size: int = 32, progress: Progress | None = None
) -> np.ndarray:
    """PyTorch fp32 logits of `model` (put in eval mode for the call) on `samples`."""
    import torch

    with eval_mode(model), torch.inference_mode():
        return batched(lambda batch: model(torch.from_numpy(batch)).float().numpy(), samples, batch_size, progress)


@contextlib.contextmanager
def eval_mode(model) -> Iterator[Any]:
    """The model in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
