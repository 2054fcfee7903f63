"""The models to compare: each SOURCE as given, or the zoo (--zoo) trained with its recipe on --data.

A zoo model trains once into OUT/models/NAME (the checkpoint and metrics.json of `edgecnn train`); a rerun
finds the finished checkpoint there and reuses it, or resumes an interrupted run from its last.pt. Each
source gets a fingerprint (its file's sha256, or the SOURCE text for a name resolved elsewhere) that the
export and measurement caches are keyed on: an unchanged source reuses its bundles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgecnn.errors import BadInputError

ZOO_FAMILIES = ("lightweight", "baseline")


@dataclass
class SourcePlan:
    """One model to compare: what it is called, how it loads, and what its bundles are keyed on."""

    label: str  # the name rows carry: the zoo name or the SOURCE as given
    source: str  # what edgecnn.load takes (a checkpoint path once a zoo model is trained)
    zoo: bool = False  # trained here from the zoo (train first when no finished checkpoint is in --out)
    options: dict[str, Any] = field(default_factory=dict)  # weights / preprocessing, as edgecnn.load takes them


def zoo_names(zoo: str) -> list[str]:
    """--zoo lightweight|baseline|NAME,NAME -> registered zoo names (aliases resolved), in registry order."""
    from edgecnn.zoo import get_spec, list_specs

    if zoo in ZOO_FAMILIES:
        return [spec.name for spec in list_specs() if spec.family == zoo]
    names = [part.strip() for part in zoo.split(",") if part.strip()]
    if not names:
        raise BadInputError("--zoo takes lightweight, baseline or zoo names separated by commas")
    return list(dict.fromkeys(get_spec(name).name for name in names))  # get_spec: one line naming the unknown


def plan_sources(sources: list[str], zoo: Optional[str], out: Path, options: dict[str, Any]) -> list[SourcePlan]:
    """The SOURCEs given, then the --zoo models (each trained into OUT/models/NAME). `options`: what edgecnn.load
    takes, for every SOURCE, or {SOURCE: options} per SOURCE (per_source_options)."""
    def options_of(source: str) -> dict[str, Any]:
        own = options.get(source) if all(isinstance(v, dict) for v in options.values()) and options else options
        return {key: value for key, value in dict(own or {}).items() if value is not None}

    plans = [SourcePlan(label=source_label(str(source)), source=str(source), options=options_of(str(source)))
             for source in sources]
    for name in zoo_names(zoo) if zoo else []:
        plans.append(SourcePlan(label=name, source=str(out / "models" / name / "model.pt"), zoo=True))
    if not plans:
        raise BadInputError("nothing to compare: give SOURCEs (zoo names, checkpoints, timm:NAME, FILE.onnx, ...) "
                            "or --zoo lightweight|baseline|NAME,NAME")
    labels = [plan.label for plan in plans]
    if len(set(labels)) != len(labels):
        raise BadInputError(f"a source is named twice: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    return plans


def per_source_options(sources: list[str], *, input_size: Optional[str] = None, resize: Optional[str] = None,
                       **common: Any) -> dict[str, dict[str, Any]]:
    """{SOURCE: edgecnn.load options}: --input-size and --resize give one value for all or one per SOURCE
    (EfficientNet-Lite1 at 240 next to Lite2 at 260); the rest apply to every SOURCE."""
    sizes, resizes = _per_source(input_size, sources, "--input-size"), _per_source(resize, sources, "--resize")
    return {source: {**common, "input_size": size, "resize": side}
            for source, size, side in zip(sources, sizes, resizes)}


def _per_source(text: Optional[str], sources: list[str], option: str) -> list[Optional[int]]:
    if text is None:
        return [None] * len(sources)
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise BadInputError(f"{option} takes whole numbers separated by commas, got {text!r}") from None
    if len(values) == 1:
        return values * len(sources)
    if len(values) != len(sources):
        raise BadInputError(f"{option}: give one value for every SOURCE or one per SOURCE ({len(sources)}), "
                            f"got {len(values)}")
    return values


def source_label(source: str) -> str:
    """A short name for a row: a file's stem (a checkpoint's folder name for model.pt), else the SOURCE as given."""
    path = Path(source)
    if not path.exists():
        return source
    if path.is_dir() or path.stem == "model":
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def trained_checkpoint(plan: SourcePlan, data: Any, *, epochs: Optional[int],
                       note: Callable[[str], None]) -> Path:
    """The zoo model's finished checkpoint in --out: reused when there, else trained (or resumed) with its recipe."""
    from edgecnn.api import train
    from edgecnn.atomic import read_json

    checkpoint = Path(plan.source)
    folder = checkpoint.parent
    metrics = folder / "metrics.json"
    if checkpoint.is_file() and metrics.is_file() and "test_top1" in read_json(metrics, what="metrics.json"):
        note(f"{plan.label}: reusing the checkpoint in {folder}")
        return checkpoint
    resume = (folder / "last.pt").is_file()
    note(f"{plan.label}: {'resuming' if resume else 'training'} on {data} with its recipe"
         + (f" ({epochs} epochs)" if epochs else "") + f" into {folder}")
    train(plan.label, data, epochs=epochs, out=folder, resume=resume, force=not resume and folder.exists())
    return checkpoint


def fingerprint(plan: SourcePlan) -> str:
    """sha256 of the source's file (a checkpoint folder: its model.pt), else of the SOURCE text and options."""
    path = Path(plan.source)
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(plan.source.encode())
    digest.update(repr(sorted(plan.options.items())).encode())
    return digest.hexdigest()


def model_size(model: Any) -> tuple[Optional[int], Optional[int]]:
    """(parameters, multiply-adds per image) of a loaded model, counted as `edgecnn info` counts; None: unknown."""
    try:
        from edgecnn.zoo.profile import profile_model

        profile = profile_model(model.module, tuple(model.input_shape))
        return profile.total_params, profile.total_macs
    except Exception:  # noqa: BLE001 - an imported graph (ONNX, TorchScript) may not run the hooks: numbers unknown
        return None, None


__all__ = ["SourcePlan", "ZOO_FAMILIES", "fingerprint", "model_size", "per_source_options", "plan_sources", "source_label",
           "trained_checkpoint",
           "zoo_names"]
