"""`edgecnn.load` and `edgecnn.train`: a model handle from any SOURCE, or from an `nn.Module` in memory.

A `Model` is what `edgecnn.export` takes: the loaded network, its preprocessing and class names, and
where it came from, so the export records the same manifest as `edgecnn export SOURCE` would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from edgecnn.api.progress import ProgressCallback, Reporter
from edgecnn.errors import BadInputError

if TYPE_CHECKING:  # the types only: importing them would import torch
    from edgecnn.api.bundle_handle import Bundle
    from edgecnn.checkpoint import LoadedModel
    from edgecnn.preprocess import PreprocessSpec
    from edgecnn.train import TrainResult

Numbers = Union[str, Sequence[float]]


@dataclass(frozen=True)
class Preprocessing:
    """What a foreign model states about its input (the CLI's --input-size, --resize, --mean, --std, --channels,
    --classes); None: not stated. Mean and std apply to pixels scaled to [0, 1]."""

    input_size: Optional[int] = None
    resize: Optional[int] = None
    mean: Optional[Numbers] = None
    std: Optional[Numbers] = None
    channels: Optional[int] = None
    classes: Optional[Union[str, Path, Sequence[str]]] = None  # a class list file, or (in-memory module) names

    def stated(self):
        """As the sources package takes it (a class list file only; names in a list go with a module)."""
        from edgecnn.sources import StatedPreprocess

        classes = self.classes if self.classes is None or isinstance(self.classes, (str, Path)) else None
        return StatedPreprocess(input_size=self.input_size, resize=self.resize, mean=self.mean, std=self.std,
                                channels=self.channels, classes=str(classes) if classes is not None else None)

    def class_list(self) -> Optional[tuple[str, ...]]:
        """Class names given as a list (not a file), else None."""
        if self.classes is None or isinstance(self.classes, (str, Path)):
            return None
        return tuple(str(name) for name in self.classes)


@dataclass
class Model:
    """A model ready to export: the network (`module`), its preprocessing and classes, and its source."""

    loaded: "LoadedModel" = field(repr=False)
    source: str  # the SOURCE it was loaded from, or its name for an in-memory module
    preprocessing: Preprocessing = field(default_factory=Preprocessing, repr=False)
    weights: Optional[str] = None
    state_dict: Optional[str] = None
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)  # a trained model's metrics.json

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def module(self) -> Any:
        """The torch nn.Module (eval mode, CPU)."""
        return self.loaded.model

    @property
    def preprocess(self) -> "PreprocessSpec":
        """How raw images become its input: size, channels, mean, std, resize (edgecnn.preprocess.PreprocessSpec)."""
        return self.loaded.preprocess

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.loaded.preprocess.input_shape)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.loaded.class_names)

    @property
    def num_classes(self) -> int:
        return self.loaded.num_classes

    @property
    def checkpoint(self) -> Optional[Path]:
        """The edgecnn checkpoint it was loaded from (model.pt), if any."""
        path = self.loaded.provenance.get("path")
        return Path(path) if path else None

    def export(self, *, target: str, **options: Any) -> "Bundle":
        """`edgecnn.export(self, target=..., ...)`."""
        from edgecnn.api.export import export

        return export(self, target=target, **options)


def load(source: Any, *, input_size: Optional[int] = None, resize: Optional[int] = None,
         mean: Optional[Numbers] = None, std: Optional[Numbers] = None, channels: Optional[int] = None,
         classes: Optional[Union[str, Path, Sequence[str]]] = None, weights: Optional[str] = None,
         state_dict: Optional[Union[str, Path]] = None, name: Optional[str] = None) -> Model:
    """Load a model: a zoo name, a checkpoint, `timm:NAME`, `torchvision:NAME`, `FILE.py:FUNCTION`, `FILE.onnx`,
    `FILE.pt2`, TorchScript, or a torch `nn.Module` already in memory (with its preprocessing stated).

    A foreign model states what the CLI's --input-size/--resize/--mean/--std/--channels/--classes say;
    `classes` is a class list file, or (for a module) the names themselves.
    """
    preprocessing = Preprocessing(input_size=input_size, resize=resize, mean=mean, std=std, channels=channels,
                                  classes=classes)
    if isinstance(source, (str, os.PathLike)):
        if preprocessing.class_list() is not None:
            raise BadInputError("classes as a list goes with an in-memory module; for a SOURCE pass a class list "
                                "file (one class a line)")
        if name is not None:
            raise BadInputError("name= goes with an in-memory module; a SOURCE names itself")
        from edgecnn.sources import load_source

        text = str(source)
        loaded = load_source(text, weights=weights, state_dict=str(state_dict) if state_dict else None,
                             stated=preprocessing.stated())
        return Model(loaded=loaded, source=text, preprocessing=preprocessing, weights=weights,
                     state_dict=str(state_dict) if state_dict else None)
    if weights is not None or state_dict is not None:
        raise BadInputError("weights=/state_dict= go with a SOURCE; load them into your module before passing it")
    from edgecnn.sources.memory import load_module

    loaded = load_module(source, stated=preprocessing.stated(), name=name, class_names=preprocessing.class_list())
    return Model(loaded=loaded, source=loaded.name, preprocessing=Preprocessing())


def train(model: str, data: Any, *, epochs: Optional[int] = None, batch_size: Optional[int] = None,
          lr: Optional[float] = None, optimizer: Optional[str] = None, seed: Optional[int] = None,
          out: Optional[Union[str, Path]] = None, resume: bool = False, force: bool = False,
          weights: Optional[str] = None, state_dict: Optional[Union[str, Path]] = None,
          data_root: Optional[Union[str, Path]] = None, threads: Optional[int] = None, augment: bool = True,
          progress: Optional[ProgressCallback] = None) -> Model:
    """Train a zoo model on a data SPEC (`"digits"`, `edgecnn.data.ImageFolder(...)`); the best epoch, loaded.

    Writes OUT/model.pt and OUT/metrics.json (default OUT: runs/NAME), as `edgecnn train` does.
    """
    result = train_run(model, data, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
                       out=out, resume=resume, force=force, weights=weights, state_dict=state_dict,
                       data_root=data_root, threads=threads, augment=augment, progress=progress)
    trained = load(result.checkpoint)
    trained.metrics = dict(result.metrics)
    return trained


def train_run(model: str, data: Any, *, progress: Optional[ProgressCallback] = None,
              show_progress_bar: bool = False, **options: Any) -> "TrainResult":
    """The training run itself (`edgecnn train`): checks the options, trains, returns where it wrote."""
    from edgecnn.errors import require

    require("torch", "train", "edgecnn train")
    from edgecnn.data.specs import Images, as_data
    from edgecnn.train import DEFAULT_BATCH_SIZE, TrainConfig, train as train_loop
    from edgecnn.validate import writable_folder
    from edgecnn.zoo import get_spec

    reporter = Reporter(progress)
    spec = get_spec(model)
    if spec.name != model:
        reporter.note(f"{model} -> {spec.name}")
    data = as_data(data)
    if isinstance(data, Images):
        raise BadInputError("training takes a data SPEC (e.g. 'digits', edgecnn.data.ImageFolder(DIR)): the "
                            "checkpoint records it, so export and verify can load the same data again")
    resume, force = options.get("resume", False), options.get("force", False)
    weights, state_dict = options.get("weights"), options.get("state_dict")
    if resume and force:
        raise BadInputError("pass either --resume or --force, not both")
    if weights is not None and weights not in ("imagenet", "random") and not Path(weights).is_file():
        raise BadInputError(f"--weights must be imagenet, random or an existing file, got {weights!r}")
    if state_dict is not None and not Path(state_dict).is_file():
        raise BadInputError(f"no such state dict file: {state_dict}")
    out = options.get("out") or Path("runs") / spec.name
    writable_folder(Path(out), "--out")  # before the epochs, not after them
    batch_size, seed, optimizer = options.get("batch_size"), options.get("seed"), options.get("optimizer")
    data_root = options.get("data_root")
    config = TrainConfig(
        model=spec.name, data=data, out_dir=str(out),
        epochs=options.get("epochs"),  # None: the model's registered recipe, else DEFAULT_EPOCHS
        batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size, lr=options.get("lr"),
        optimizer=optimizer.lower() if optimizer else None, seed=0 if seed is None else seed,
        weights=None if weights == "random" else weights, state_dict=str(state_dict) if state_dict else None,
        data_root=str(data_root) if data_root else None, threads=options.get("threads"),
        augment=options.get("augment", True),
    )

    epochs = config.resolved_epochs()

    def on_epoch(record: dict) -> None:
        reporter.step(f"epoch {record['epoch']}/{epochs}: val top-1 {record['val_top1']:.2f} %", record["epoch"], epochs)

    return train_loop(config, force=force, resume=resume, progress=show_progress_bar, on_epoch=on_epoch)


__all__ = ["Model", "Preprocessing", "load", "train", "train_run"]
