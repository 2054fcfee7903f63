"""Training: one recipe for every zoo model, single process or DistributedDataParallel.

`train(TrainConfig(...))` writes DIR/model.pt (the best epoch by validation top-1),
DIR/metrics.json and, after every epoch, DIR/last.pt for `--resume`. A model's departures from
the default recipe are registered with the model (`recipe=` in `edgecnn.zoo`).

Modules: config (TrainConfig, defaults), recipe (applying a model's init departures), augment,
ddp (torchrun process group), evaluation (accuracy, logits), state (model.pt, last.pt, resume),
progress (the bar), loop (the training loop).
"""

from edgecnn.train.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_FINETUNE_LR,
    DEFAULT_LR,
    OPTIMIZERS,
    TrainConfig,
    model_recipe,
)
from edgecnn.train.augment import augment_batch
from edgecnn.train.ddp import DistributedContext, distributed_context
from edgecnn.train.evaluation import evaluate, predict_logits, topk_correct
from edgecnn.train.recipe import apply_recipe_init, head_layer
from edgecnn.train.state import LAST_FORMAT
from edgecnn.train.loop import TrainResult, train
from edgecnn.zoo import RECIPE_KEYS

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_FINETUNE_LR",
    "DEFAULT_LR",
    "DistributedContext",
    "LAST_FORMAT",
    "OPTIMIZERS",
    "RECIPE_KEYS",
    "TrainConfig",
    "TrainResult",
    "apply_recipe_init",
    "augment_batch",
    "distributed_context",
    "evaluate",
    "head_layer",
    "model_recipe",
    "predict_logits",
    "topk_correct",
    "train",
]
