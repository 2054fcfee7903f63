"""PyTorch fp32 reference logits of an in-memory model (what export checks every artifact against)."""

from __future__ import annotations

import numpy as np

from edgecnn.compare import Progress, batched


def torch_logits(
    model, samples: np.ndarray, *, batch_size: int = 32, progress: Progress | None = None
) -> np.ndarray:
    """PyTorch fp32 logits of `model` (put in eval mode for the call) on `samples`."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return batched(
                lambda batch: model(torch.from_numpy(batch)).float().numpy(),
                samples,
                batch_size,
                progress,
            )
    finally:
        model.train(was_training)
