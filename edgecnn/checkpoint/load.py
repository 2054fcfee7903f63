"""Model loading: everywhere a model is taken (eval, export, the PyTorch runner) goes through `load_model`.

A model source is either an edgecnn checkpoint (or a folder holding `model.pt`), or a zoo name
with `weights`: "imagenet" (published torchvision/timm weights), "random", or a weights file; or
a zoo name with `state_dict`, a user's own torchvision-style state dict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import edgecnn
from edgecnn.checkpoint.format import CHECKPOINT_SUFFIXES, read_checkpoint, torch_load
from edgecnn.checkpoint.published import imagenet_class_names, published_state_dict, timm_published_model
from edgecnn.checkpoint.weights import head_keys, infer_num_classes, load_weights_into, normalize_state_dict
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec

WEIGHT_CHOICES = ("imagenet", "random")


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to feed it and to trust its output."""

    model: torch.nn.Module  # eval mode, on CPU
    spec: Any  # edgecnn.zoo.ModelSpec
    preprocess: PreprocessSpec  # from the checkpoint, or the model's default input for a zoo name
    class_names: tuple[str, ...]
    provenance: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def accuracy_meaningful(self) -> bool:
        """False for random weights: latency is real, accuracy means nothing."""
        return bool(self.provenance.get("accuracy_meaningful", False))

    @property
    def from_checkpoint(self) -> bool:
        return self.provenance.get("source") == "checkpoint"

    @property
    def checkpoint(self) -> dict | None:
        """The checkpoint's metadata (everything but the state dict), when loaded from one."""
        return self.provenance.get("checkpoint")


def initial_weights(spec, num_classes: int, weights: str | None) -> tuple[torch.nn.Module, str]:
    """A fresh model of `num_classes` outputs, initialised as asked: (model, provenance label).

    "imagenet" loads the published weights (the classifier is re-initialised when num_classes is
    not 1,000, for fine-tuning); "random" keeps the fresh init; a path loads that weights file.
    """
    model = spec.build(num_classes)
    if weights in (None, "random"):
        return model, "random"
    if weights == "imagenet":
        state = published_state_dict(spec)
        label = "imagenet"
    else:
        path = Path(weights)
        if not path.is_file():
            raise BadInputError(
                f"--weights must be one of {', '.join(WEIGHT_CHOICES)} or a weights file; no file {weights!r}"
            )
        if (spec.weights or "").startswith("timm:") and path.suffix in (".safetensors", ".bin", ".pth", ".pt"):
            state = timm_published_model(spec, path).state_dict()
        else:
            state = normalize_state_dict(torch_load(path, what="weights"))
        label = f"file:{path}"
    heads = head_keys(spec)
    skip = tuple(k for k in heads if k in state and state[k].shape != model.state_dict()[k].shape)
    load_weights_into(model, state, arch=spec.name, skip_keys=skip, origin=f"{spec.name}'s {label} weights")
    return model, label


def resolve_checkpoint_path(source: str | Path) -> Path | None:
    """The checkpoint file a source names (a file, or a folder with model.pt), or None for a zoo name."""
    path = Path(source).expanduser()
    if path.is_dir():
        candidate = path / "model.pt"
        if candidate.is_file():
            return candidate
        raise BadInputError(f"{path} is a folder without model.pt (train into it with `edgecnn train ... --out {path}`)")
    if path.is_file():
        return path
    text = str(source)
    if path.suffix in CHECKPOINT_SUFFIXES or os.sep in text or "/" in text:
        raise BadInputError(f"no such checkpoint file: {path}")
    return None


def load_model(source: str | Path, *, weights: str | None = None, state_dict: str | Path | None = None,
               num_classes: int | None = None) -> LoadedModel:
    """Load a checkpoint path or a zoo name (+ weights / state dict) as an eval-mode CPU model.

    weights: "imagenet" (the default for a zoo name), "random", or a weights file; state_dict: a
    user's torchvision-style state dict for the named architecture (its class count is read from
    it). num_classes, when given, must match what the weights hold.
    """
    from edgecnn.zoo import get_spec

    path = resolve_checkpoint_path(source)
    if path is not None:
        if weights not in (None,) or state_dict is not None:
            raise BadInputError("--weights/--state-dict go with a model NAME, not with a checkpoint")
        return _load_checkpoint_model(path, num_classes)

    spec = get_spec(str(source))
    if state_dict is not None:
        if weights not in (None,):
            raise BadInputError("pass either --weights or --state-dict, not both")
        model, class_names, provenance = _from_state_dict(spec, Path(state_dict).expanduser(), num_classes)
    else:
        model, class_names, provenance = _from_zoo_weights(spec, weights, num_classes)
    model.eval()
    provenance.update(arch=spec.name, torch_version=str(torch.__version__), edgecnn_version=edgecnn.__version__)
    return LoadedModel(model=model, spec=spec, preprocess=_default_preprocess(spec, class_names, "model"),
                       class_names=class_names, provenance=provenance)


def _from_state_dict(spec, file: Path, num_classes: int | None):
    """A zoo architecture with a user's state dict: (model, class names, provenance)."""
    state = normalize_state_dict(torch_load(file, what="state dict"))
    found = infer_num_classes(spec, state)
    if num_classes is not None and num_classes != found:
        raise BadInputError(f"{file} has {found} classes, not the {num_classes} asked for")
    model = spec.build(found)
    load_weights_into(model, state, arch=spec.name, origin=str(file))
    class_names = tuple(str(i) for i in range(found))
    return model, class_names, {"source": "state_dict", "weights": f"file:{file}", "accuracy_meaningful": True}


def _from_zoo_weights(spec, weights: str | None, num_classes: int | None):
    """A zoo architecture with published, random or file weights: (model, class names, provenance)."""
    choice = weights or ("imagenet" if spec.weights else "random")
    if choice == "random":
        count = num_classes or 1000
        class_names = tuple(str(i) for i in range(count))
        return spec.build(count), class_names, {"source": "zoo", "weights": "random", "accuracy_meaningful": False}
    model, label = initial_weights(spec, 1000, choice)
    if num_classes not in (None, 1000):
        raise BadInputError(
            f"{spec.name}'s {label} weights have 1000 classes, not {num_classes}: fine-tune with"
            f" `edgecnn train {spec.name} --weights {choice} --data SPEC`"
        )
    return model, imagenet_class_names(spec), {"source": "zoo", "weights": label, "accuracy_meaningful": True}


def _load_checkpoint_model(path: Path, num_classes: int | None) -> LoadedModel:
    from edgecnn.zoo import get_spec

    payload = read_checkpoint(path)
    try:
        spec = get_spec(payload["arch"])
    except BadInputError:
        raise BadInputError(
            f"{path} was trained as {payload['arch']!r}, which this edgecnn does not know (`edgecnn models`)"
        ) from None
    count = payload["num_classes"]
    if num_classes is not None and num_classes != count:
        raise BadInputError(f"{path} has {count} classes, not the {num_classes} asked for")
    model = spec.build(count)
    load_weights_into(model, normalize_state_dict(payload["state_dict"]), arch=spec.name,
                      origin=f"the weights in {path}")
    model.eval()
    metadata = {k: v for k, v in payload.items() if k not in ("state_dict", "preprocess_spec")}
    provenance = {
        "source": "checkpoint",
        "path": str(path),
        "weights": f"checkpoint:{path}",
        "accuracy_meaningful": True,
        "arch": spec.name,
        "checkpoint": metadata,
        "torch_version": str(torch.__version__),
        "edgecnn_version": edgecnn.__version__,
    }
    return LoadedModel(model=model, spec=spec, preprocess=payload["preprocess_spec"],
                       class_names=tuple(payload["class_names"]), provenance=provenance)


def _default_preprocess(spec, class_names, normalization: str) -> PreprocessSpec:
    from edgecnn.data import published_normalization

    mean, std = published_normalization(spec)
    channels = spec.channels
    if len(mean) != channels:
        mean, std = (mean[0],) * channels, (std[0],) * channels
    return PreprocessSpec(size=spec.input_size[1], channels=channels, mean=mean, std=std,
                          class_names=tuple(class_names), data=None, normalization=normalization)

