"""Checkpoints and model loading.

- format: the checkpoint file (save_checkpoint, read_checkpoint, atomic_torch_save, the guarded torch_load)
- weights: state dicts (unwrapping, classifier keys, strict loading with one clear error)
- published: published ImageNet weights (torch.hub / timm caches, downloads that fail fast offline)
- load: load_model, the one way eval, export and the PyTorch runner take a model; initial_weights
"""

from edgecnn.checkpoint.format import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_SUFFIXES,
    CHECKPOINT_VERSION,
    atomic_torch_save,
    read_checkpoint,
    save_checkpoint,
    torch_load,
)
from edgecnn.checkpoint.weights import head_keys, infer_num_classes, load_weights_into, normalize_state_dict
from edgecnn.checkpoint.published import (
    DOWNLOAD_TIMEOUT_S,
    imagenet_class_names,
    published_state_dict,
    published_weights_file,
)
from edgecnn.checkpoint.load import (
    WEIGHT_CHOICES,
    LoadedModel,
    initial_weights,
    load_model,
    resolve_checkpoint_path,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SUFFIXES",
    "CHECKPOINT_VERSION",
    "DOWNLOAD_TIMEOUT_S",
    "LoadedModel",
    "WEIGHT_CHOICES",
    "atomic_torch_save",
    "head_keys",
    "imagenet_class_names",
    "infer_num_classes",
    "initial_weights",
    "load_model",
    "load_weights_into",
    "normalize_state_dict",
    "published_state_dict",
    "published_weights_file",
    "read_checkpoint",
    "resolve_checkpoint_path",
    "save_checkpoint",
    "torch_load",
]
