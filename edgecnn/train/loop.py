"""The training loop: one recipe for every zoo model, single process or DistributedDataParallel.

Recipe: AdamW (or SGD with Nesterov momentum; a model's registered recipe holds its departures)
with a one-cycle learning rate, label smoothing, light geometric augmentation, the best epoch by
validation accuracy kept as DIR/model.pt, the history in DIR/metrics.json, and DIR/last.pt after
every epoch so `--resume` continues an interrupted run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgecnn.atomic import write_json_atomic
from edgecnn.checkpoint import initial_weights
from edgecnn.data import Dataset, load_data, preprocess_for
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec
from edgecnn.train.augment import augment_batch
from edgecnn.train.config import TrainConfig, model_recipe
from edgecnn.train.ddp import DistributedContext, distributed_context, wrap_model
from edgecnn.train.evaluation import evaluate_sharded
from edgecnn.train.progress import ProgressBar
from edgecnn.train.recipe import apply_recipe_init
from edgecnn.train.state import RunPaths, merge_resume_config, read_last, save_last, save_model

OPTIMIZER_LABELS = {"adamw": "AdamW", "sgd": "SGD"}


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    metrics: dict


@dataclass
class _Best:
    """The history so far and the best epoch by validation top-1, with its weights."""

    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": 0, "val_top1": -1.0})
    exact: float = -1.0  # unrounded, so a tie with the best is not taken for an improvement
    state: dict | None = None
    first_epoch: int = 1

    def restore(self, saved: dict) -> None:
        self.history = list(saved["history"])
        self.best = dict(saved["best"])
        self.state = saved.get("best_state")
        self.exact = float(self.best.get("val_top1_exact", self.best["val_top1"]))
        self.first_epoch = int(saved["epoch"]) + 1

    def offer(self, epoch: int, val_top1: float, val_top5: float, module: torch.nn.Module) -> bool:
        """Keep this epoch if it beats the best so far; whether it did."""
        if not val_top1 > self.exact:
            return False
        self.exact = val_top1
        self.best = {"epoch": epoch, "val_top1": round(val_top1, 3), "val_top5": round(val_top5, 3),
                     "val_top1_exact": val_top1}
        self.state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        return True


@dataclass
class _Run:
    """Everything one training run works with, built once by `_prepare`."""

    config: TrainConfig
    spec: Any  # edgecnn.zoo.ModelSpec
    context: DistributedContext
    paths: RunPaths
    dataset: Dataset
    preprocess: PreprocessSpec
    module: torch.nn.Module  # the network itself
    model: torch.nn.Module  # what trains: the network, or its DistributedDataParallel wrapper
    init_label: str
    recipe_init: list[str]
    sampler: Any  # DistributedSampler (also for one process: the same shuffling either way)
    per_rank_batch: int
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: torch.nn.Module
    tracker: _Best = field(default_factory=_Best)
    metrics: dict = field(default_factory=dict)


def train(config: TrainConfig, *, force: bool = False, resume: bool = False, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None, dataset: Dataset | None = None) -> TrainResult:
    """Train `config.model` on `config.data`; write DIR/model.pt (best epoch), metrics.json, last.pt."""
    from edgecnn.zoo import get_spec

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(config.out_dir or f"runs/{config.model}")
    config.out_dir = str(out_dir)
    paths = RunPaths.of(out_dir)

    state = None
    if resume:
        state = read_last(paths)
        config = merge_resume_config(config, state["config"])
    elif paths.checkpoint.exists() and not force:
        raise BadInputError(
            f"{paths.checkpoint} exists: pass --force to train again over it, or --resume to continue its run"
        )

    spec = get_spec(config.model)
    config.model = spec.name
    config.epochs = config.resolved_epochs()  # recorded as a number, so --resume repeats it
    context = distributed_context()
    try:
        started = time.perf_counter()
        run = _prepare(config, spec, context, paths, state=state, force=force, dataset=dataset)
        train_seconds = _run_epochs(run, progress=progress, on_epoch=on_epoch)
        return _finish(run, started=started, train_seconds=train_seconds)
    finally:
        context.close()


def _load_dataset(config: TrainConfig, dataset: Dataset | None) -> Dataset:
    if dataset is None:
        dataset = load_data(config.data, data_root=config.data_root, seed=config.seed)
    if len(dataset.train) == 0 or len(dataset.val) == 0:
        raise BadInputError(f"{config.data} has too few images to split into train and validation")
    return dataset


def _initial_model(config: TrainConfig, spec, dataset: Dataset) -> tuple[torch.nn.Module, str, list[str]]:
    """The network as the run starts it: (model, init label, recipe init changes)."""
    torch.manual_seed(config.seed)
    model, init_label = initial_weights(spec, dataset.num_classes, config.state_dict or config.weights)
    recipe_init = []
    if init_label == "random":
        recipe_init = apply_recipe_init(model, model_recipe(spec.name))
    return model, init_label, recipe_init


def _prepare(config: TrainConfig, spec, context: DistributedContext, paths: RunPaths, *, state: dict | None,
             force: bool, dataset: Dataset | None) -> _Run:
    """Data, model, sampler, optimizer and schedule, restored from `state` when resuming."""
    dataset = _load_dataset(config, dataset)
    module, init_label, recipe_init = _initial_model(config, spec, dataset)
    if state is not None:
        preprocess = PreprocessSpec.from_dict(state["preprocess"])
    else:
        preprocess = preprocess_for(spec, dataset, pretrained=init_label != "random", data_spec=config.data)
    if state is None and context.is_main and force:
        paths.last.unlink(missing_ok=True)
    module.to(context.device)
    model = wrap_model(module, context)

    from torch.utils.data.distributed import DistributedSampler

    per_rank_batch = max(1, config.batch_size // context.world_size)
    sampler = DistributedSampler(range(len(dataset.train)), num_replicas=context.world_size, rank=context.rank,
                                 shuffle=True, seed=config.seed)
    drop_last = len(sampler) > per_rank_batch  # a lone 1-image batch would upset BatchNorm
    steps = len(sampler) // per_rank_batch if drop_last else math.ceil(len(sampler) / per_rank_batch)
    optimizer, scheduler = _optimizer(config, model, total_steps=config.epochs * steps)
    run = _Run(config=config, spec=spec, context=context, paths=paths, dataset=dataset, preprocess=preprocess,
               module=module, model=model, init_label=init_label, recipe_init=recipe_init, sampler=sampler,
               per_rank_batch=per_rank_batch, steps_per_epoch=steps, optimizer=optimizer, scheduler=scheduler,
               criterion=torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing))
    if state is not None:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        run.tracker.restore(state)
    run.metrics = _initial_metrics(run)
    return run


def _optimizer(config: TrainConfig, model: torch.nn.Module, *, total_steps: int):
    """The optimizer the config resolves to, under a one-cycle schedule over `total_steps`."""
    lr = config.resolved_lr()
    weight_decay = config.resolved_weight_decay()
    if config.resolved_optimizer() == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                    pct_start=config.warmup_fraction)
    return optimizer, scheduler


def _initial_metrics(run: _Run) -> dict:
    config = run.config
    return {
        "model": run.spec.name,
        "family": run.spec.family,
        "data": config.data,
        "data_summary": run.dataset.summary(),
        "seed": config.seed,
        "init": run.init_label,
        "config": config.to_dict(),
        "lr": config.resolved_lr(),
        "optimizer": OPTIMIZER_LABELS[config.resolved_optimizer()],
        "weight_decay": config.resolved_weight_decay(),
        "schedule": "one-cycle",
        "recipe_init": run.recipe_init,
        "world_size": run.context.world_size,
        "device": str(run.context.device),
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in run.module.parameters()),
        "preprocess": run.preprocess.to_dict(),
        "history": run.tracker.history,
    }


def _run_epochs(run: _Run, *, progress: bool, on_epoch: Callable[[dict], None] | None) -> float:
    """Train the remaining epochs, saving after each; the seconds spent training, over all epochs."""
    config, tracker = run.config, run.tracker
    if run.context.is_main:
        run.paths.out_dir.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(enabled=progress and run.context.is_main, total=config.epochs * run.steps_per_epoch,
                      done=(tracker.first_epoch - 1) * run.steps_per_epoch, title=f"{run.spec.name} on {config.data}")
    train_seconds = sum(h["seconds"] for h in tracker.history)
    with bar:
        for epoch in range(tracker.first_epoch, config.epochs + 1):
            epoch_start = time.perf_counter()
            loss, top1 = _train_epoch(run, epoch, bar)
            val_top1, val_top5 = evaluate_sharded(run.module, run.dataset.val, run.preprocess, run.context)
            seconds = time.perf_counter() - epoch_start
            train_seconds += seconds
            record = {
                "epoch": epoch,
                "train_loss": round(loss, 5),
                "train_top1": round(top1, 3),
                "val_top1": round(val_top1, 3),
                "val_top5": round(val_top5, 3),
                "lr": float(run.scheduler.get_last_lr()[0]),
                "seconds": round(seconds, 3),
            }
            tracker.history.append(record)
            improved = tracker.offer(epoch, val_top1, val_top5, run.module)
            bar.epoch_line(
                f"epoch {epoch:>3}/{config.epochs}  loss {record['train_loss']:.4f}  train {record['train_top1']:6.2f}%"
                f"  val {val_top1:6.2f}%{' *' if improved else '  '}  {seconds:5.1f}s"
            )
            if run.context.is_main:
                _save_epoch(run, epoch, improved=improved, train_seconds=train_seconds)
            if on_epoch is not None:
                on_epoch(record)
    return train_seconds


def _train_epoch(run: _Run, epoch: int, bar: ProgressBar) -> tuple[float, float]:
    """One pass over this rank's shard; (mean loss, top-1 %) over every rank's samples."""
    config, context, train_split = run.config, run.context, run.dataset.train
    run.sampler.set_epoch(epoch)
    order = np.fromiter(iter(run.sampler), dtype=np.int64)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch * 1009 + context.rank)
    run.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = seen = 0
    for step in range(run.steps_per_epoch):
        chunk = order[step * run.per_rank_batch : (step + 1) * run.per_rank_batch]
        inputs = torch.from_numpy(run.preprocess.apply(train_split.images[chunk])).to(context.device)
        labels = torch.from_numpy(train_split.labels[chunk]).to(context.device)
        if config.augment:
            inputs = augment_batch(inputs, generator, config, run.dataset.hflip_ok)
        logits = run.model(inputs)
        loss = run.criterion(logits, labels)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        batch_loss = loss.item()
        loss_sum += batch_loss * len(chunk)
        correct += int((logits.detach().argmax(1) == labels).sum())
        seen += len(chunk)
        bar.advance(f"epoch {epoch}/{config.epochs} loss {batch_loss:.3f}")
    totals = torch.tensor([float(loss_sum), correct, seen], dtype=torch.float64, device=context.device)
    context.all_reduce(totals)
    return float(totals[0] / max(totals[2], 1)), 100.0 * float(totals[1] / max(totals[2], 1))


def _save_epoch(run: _Run, epoch: int, *, improved: bool, train_seconds: float) -> None:
    """Rank 0 after each epoch: model.pt when it improved, last.pt and metrics.json always."""
    tracker = run.tracker
    run.metrics.update(best_epoch=tracker.best["epoch"], best_val_top1=tracker.best["val_top1"],
                       train_seconds=round(train_seconds, 3))
    if improved:
        _save_best(run)
    save_last(run.paths.last, epoch=epoch, config=run.config.to_dict(), model=run.module.state_dict(),
              optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
              rng=torch.get_rng_state(), history=tracker.history, best=tracker.best, best_state=tracker.state,
              preprocess=run.preprocess.to_dict())
    write_json_atomic(run.paths.metrics, run.metrics)


def _save_best(run: _Run) -> None:
    save_model(run.paths.checkpoint, arch=run.spec.name, state_dict=run.tracker.state, preprocess=run.preprocess,
               metrics=run.metrics, config=run.config, init_label=run.init_label)


def _finish(run: _Run, *, started: float, train_seconds: float) -> TrainResult:
    """The test split, touched once with the best epoch's weights; the final files."""
    tracker = run.tracker
    run.module.load_state_dict(tracker.state)
    test_top1, test_top5 = evaluate_sharded(run.module, run.dataset.test, run.preprocess, run.context)
    run.metrics.update(
        best_epoch=tracker.best["epoch"], best_val_top1=tracker.best["val_top1"], test_top1=round(test_top1, 3),
        test_top5=round(test_top5, 3), train_seconds=round(train_seconds, 3),
        wall_seconds=round(time.perf_counter() - started, 3), epochs_completed=len(tracker.history),
    )
    if run.context.is_main:
        _save_best(run)
        write_json_atomic(run.paths.metrics, run.metrics)
        # The run is complete: model.pt is its result, and a stale last.pt would only invite a
        # --resume that has nothing left to do.
        run.paths.last.unlink(missing_ok=True)
    run.context.barrier()
    return TrainResult(out_dir=run.paths.out_dir, checkpoint=run.paths.checkpoint, metrics=run.metrics)
