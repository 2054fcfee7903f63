"""What defines a training run: TrainConfig, the default recipe, and the model's departures from it.

The per-model departures live on the model's registration (`recipe=` in `edgecnn.zoo`); this
module only reads them. torch-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from edgecnn.errors import BadInputError

# The default recipe, measured on `digits` with benchmarks/train_digits.py (one seed, 1 thread):
# LeNet-5 97.4 % test top-1 after 10 epochs (too close to 97 % to call reliable, hence 30),
# MobileNet v2 91.8 % / 95.9 % / 98.5 % after 6 / 8 / 10 epochs (95.9 % at 10 with 2 threads),
# ShuffleNet v2 96.3 % and ResNet-18 99.6 % after 10.
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 3e-3  # from scratch
DEFAULT_FINETUNE_LR = 1e-3  # starting from published or user weights
OPTIMIZERS = ("adamw", "sgd")
# SGD (momentum 0.9, nesterov): peak learning rates and weight decay.
DEFAULT_SGD_LR = 0.05
DEFAULT_SGD_FINETUNE_LR = 0.01
DEFAULT_SGD_WEIGHT_DECAY = 5e-4
DEFAULT_ADAMW_WEIGHT_DECAY = 0.05


def model_recipe(name: str) -> Mapping[str, Any]:
    """The registered recipe departures of a zoo model name or alias ({} for the default recipe)."""
    from edgecnn.zoo import recipe_of

    return recipe_of(name)


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in metrics.json and last.pt)."""

    model: str
    data: str
    out_dir: str = ""
    epochs: int | None = None  # None: the model's recipe "epochs", else DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE  # global: split over the processes of a distributed run
    lr: float | None = None  # peak of the one-cycle schedule; None: the default for the init
    weight_decay: float | None = None  # None: 0.05 for AdamW, 5e-4 for SGD
    optimizer: str | None = None  # "adamw" or "sgd"; None: the model's recipe, else AdamW
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.25  # of the steps, rising to the peak learning rate
    augment: bool = True
    max_shift: float = 0.1  # fraction of the side
    max_rotation: float = 10.0  # degrees
    max_scale: float = 0.1  # +-, relative
    seed: int = 0
    weights: str | None = None  # None/"random", "imagenet", or a weights file
    state_dict: str | None = None  # a user's torchvision-style state dict to start from
    data_root: str | None = None
    threads: int | None = None

    def resolved_optimizer(self) -> str:
        if self.optimizer:
            return self.optimizer
        return model_recipe(self.model).get("optimizer", "adamw")

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return int(model_recipe(self.model).get("epochs", DEFAULT_EPOCHS))

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        recipe = model_recipe(self.model)
        if "lr" in recipe and not self.optimizer:
            return float(recipe["lr"])
        scratch = self.init_label() == "random"
        if self.resolved_optimizer() == "sgd":
            return DEFAULT_SGD_LR if scratch else DEFAULT_SGD_FINETUNE_LR
        return DEFAULT_LR if scratch else DEFAULT_FINETUNE_LR

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return DEFAULT_SGD_WEIGHT_DECAY if self.resolved_optimizer() == "sgd" else DEFAULT_ADAMW_WEIGHT_DECAY

    def init_label(self) -> str:
        if self.state_dict:
            return f"file:{self.state_dict}"
        return self.weights or "random"

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if name == "epochs" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise BadInputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInputError(f"--lr must be a positive number, got {self.lr!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise BadInputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.weight_decay is not None and not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise BadInputError(f"weight decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise BadInputError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weights and self.state_dict:
            raise BadInputError("pass either --weights or --state-dict, not both")
