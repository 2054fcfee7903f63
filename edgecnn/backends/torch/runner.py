"""PyTorch eager runner: the fp32 reference that exported artifacts are compared against.

It is the only runner that imports torch, and only inside `load`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, require
from edgecnn.backends.runner import Runner, chw_from_manifest


class TorchEagerRunner(Runner):
    """An nn.Module in eval mode under `torch.inference_mode`, with explicit intra-op threads.

    `load(path)` reads an edgecnn checkpoint (`model.pt`, loaded as data with
    `weights_only=True`); `load(None, model=module)` wraps a module already in memory.
    """

    runtime = "torch"
    extra = "torch"
    options = frozenset({"model"})

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "TorchEagerRunner":
        module = options.pop("model", None)
        options = self._start_load(path, threads, batch, options)
        torch = require("torch", self.extra, "the PyTorch reference run")
        self._torch = torch
        self.version = torch.__version__
        torch.set_num_threads(self.threads)
        try:
            # One inter-op thread, like the other runners; allowed only before any parallel work.
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass

        metadata: dict[str, Any] = {}
        if module is None:
            if self.path is None:
                raise BadInputError("the torch runner needs a checkpoint path or a model")
            module, metadata = _load_checkpoint(self.path)
        self.model = module.eval()
        self.input_shape = chw_from_manifest(options) or _input_shape_from(metadata)
        self.applied = {
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "inference_mode": True,
            "device": "cpu",
            "dtype": "float32",
        }
        return self

    def bind(self, batch: np.ndarray) -> None:
        batch = self._check_batch(batch)
        self._input = self._torch.from_numpy(batch)
        self.batch = batch.shape[0]

    def invoke(self) -> None:
        with self._torch.inference_mode():
            self._output = self.model(self._input)

    def fetch(self) -> np.ndarray:
        output = self._output
        if isinstance(output, (tuple, list)):  # e.g. GoogLeNet aux outputs: logits come first
            output = output[0]
        return output.detach().float().cpu().numpy()

    def close(self) -> None:
        self.model = None


def _load_checkpoint(path) -> tuple[Any, dict[str, Any]]:
    """(module, metadata) from an edgecnn checkpoint (loaded as data, weights_only)."""
    from edgecnn.checkpoint import load_model

    loaded = load_model(path)
    preprocess = getattr(loaded, "preprocess", None)
    metadata: dict[str, Any] = {}
    if preprocess is not None:
        metadata["input_shape"] = [preprocess.channels, preprocess.size, preprocess.size]
    return loaded.model, metadata


def _input_shape_from(metadata: dict[str, Any]) -> tuple[int, int, int] | None:
    """[C, H, W] recorded with the checkpoint."""
    value = metadata.get("input_shape")
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return (int(value[0]), int(value[1]), int(value[2]))
    return None
