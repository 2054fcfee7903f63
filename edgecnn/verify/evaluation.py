"""Running artifacts through their Runner on the samples, and the metrics and checks of each one."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.backends import get_backend
from edgecnn.bench.tuned import compute_precision
from edgecnn.inference import run_logits
from edgecnn.compare import compare_logits, top1
from edgecnn.errors import MissingDependencyError
from edgecnn.verify.results import ArtifactResult, Check, VerifyReport
from edgecnn.verify.samples import Samples
from edgecnn.verify.settings import Progress, VerifySettings
from edgecnn.thresholds import ACCURACY_CHECKS, Thresholds

_METRICS = ("top1", "reference_top1", "drop", "agreement", "max_abs_diff", "mean_abs_diff", "cosine", "min_cosine")


def evaluate_artifact(
    logits: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    thresholds: Thresholds,
    *,
    accuracy_meaningful: bool = True,
) -> dict[str, Any]:
    """Metrics and checks of an artifact's logits against the reference's, on the same samples.

    `labels` None means the samples have no meaningful labels (noise, or data the model was not
    trained on): top-1 and drop are then not computed and the drop check is skipped.
    """
    logits = np.asarray(logits, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    metrics: dict[str, Any] = dict.fromkeys(_METRICS)
    checks: list[Check] = []
    if labels is not None:
        metrics["reference_top1"] = top1(reference, labels)
    if logits.ndim != 2 or logits.shape != reference.shape:
        # A wrong class count or sample count: nothing else can be compared.
        checks.append(Check("output_shape", None, None, "==", False,
                            f"logits {list(logits.shape)} vs reference {list(reference.shape)}"))
        return {"metrics": metrics, "checks": checks}
    finite = bool(np.all(np.isfinite(logits)))
    checks.append(Check("finite", None, None, "==", finite, None if finite else "NaN or inf in the logits"))
    if labels is not None:
        metrics["top1"] = top1(logits, labels)
        metrics["drop"] = metrics["reference_top1"] - metrics["top1"]
    if finite:
        parity = compare_logits(reference, logits)
        metrics.update(agreement=parity.top1_agreement, max_abs_diff=parity.max_abs_diff,
                       mean_abs_diff=parity.mean_abs_diff, cosine=parity.cosine, min_cosine=parity.min_cosine)
    else:
        metrics["agreement"] = float(np.mean(np.nan_to_num(logits, nan=-np.inf).argmax(1) == reference.argmax(1)))
    skip = None
    if not accuracy_meaningful:
        skip = "random weights: accuracy means nothing"
    elif labels is None:
        skip = "the samples have no meaningful labels"
    for name, limit, op in (("drop", thresholds.max_drop, "<="), ("agreement", thresholds.min_agreement, ">="),
                            ("cosine", thresholds.min_cosine, ">="), ("max_abs_diff", thresholds.max_abs_diff, "<=")):
        if limit is not None:
            checks.append(_check(name, metrics[name], limit, op, skip=skip if name in ACCURACY_CHECKS else None))
    return {"metrics": metrics, "checks": checks}


def _check(name: str, value: float | None, threshold: float, op: str, *, skip: str | None) -> Check:
    """One threshold applied to one value; `skip` says why an accuracy check cannot run."""
    if skip is not None:
        return Check(name, value, threshold, op, None, skip)
    if value is None:
        return Check(name, None, threshold, op, False, "not computable (non-finite logits)")
    # Round like the report does, so a value printed as equal to the limit never fails it.
    shown = round(value, 6)
    return Check(name, value, threshold, op, shown <= threshold if op == "<=" else shown >= threshold)


def guess_precision(path: Path) -> str:
    """fp32 / fp16 / int8 from an artifact's file name, fp32 when it does not say."""
    tokens = set(re.split(r"[^a-z0-9]+", path.name.lower()))
    for precision in ("int8", "fp16", "fp32"):
        if precision in tokens or any(t.endswith(precision) or t.startswith(precision) for t in tokens):
            return precision
    return "fp32"


@dataclass
class Target:
    """One artifact to verify: where it is and how to run it."""

    name: str
    path: Path
    format: str
    runtime: str
    precision: str
    options: dict[str, Any]  # Runner.load options (precision, input_shape, layout)
    batch: int | None = None  # the batch the artifact takes, when the manifest says
    threads: int | None = None  # tuned for this machine (edgecnn tune); None: the run's threads
    tuned_from: str | None = None  # the bundle's tuning file the threads and options come from
    layers_in_float: int = 0  # int8 layers export kept in float


def run_targets(targets: list[Target], samples: Samples, settings: VerifySettings, *, threads: int,
                accuracy_meaningful: bool, progress: Progress | None) -> VerifyReport:
    """Every target through its Runner on `samples` (whose reference is resolved): the report, unnamed."""
    started = time.perf_counter()
    results = [_run_target(target, samples, settings, threads=threads, accuracy_meaningful=accuracy_meaningful,
                           progress=progress) for target in targets]
    notes = list(samples.notes)
    if samples.labels is None and accuracy_meaningful:
        notes.insert(0, "the samples carry no meaningful labels: only agreement with the reference is checked")
    if not accuracy_meaningful:
        notes.insert(0, "random weights: top-1 means nothing, so only agreement with the reference is checked")
    return VerifyReport(
        model="model", target=None, bundle=None, samples=int(samples.inputs.shape[0]),
        samples_source=samples.source, reference_source=samples.reference_source,
        reference_label=samples.reference_label,
        reference_top1=None if samples.labels is None else top1(samples.reference_logits, samples.labels),
        accuracy_meaningful=accuracy_meaningful,
        checkpoint=None, artifacts=results, notes=notes, seconds=time.perf_counter() - started,
    )


def _run_target(target: Target, samples: Samples, settings: VerifySettings, *, threads: int,
                accuracy_meaningful: bool, progress: Progress | None) -> ArtifactResult:
    thresholds = settings.overrides.for_precision(target.precision)
    # A static-batch artifact runs at the batch its manifest records, else 1: resizing one is not
    # safe for every graph.
    batch = target.batch or (1 if get_backend(target.runtime).static_batch else settings.batch)
    begun = time.perf_counter()
    threads = target.threads or threads
    compute = None
    try:
        logits, info = run_logits(target.runtime, target.path, samples.inputs, threads=threads, batch=batch,
                                  options=target.options, label=target.name, progress=progress)
    except MissingDependencyError:
        raise  # this machine lacks the runtime: the user installs the extra (exit 2)
    except Exception as exc:  # noqa: BLE001 - the artifact does not run here: that is its failure
        evaluation = _did_not_run(exc, samples)
        info = {"batch": batch, "threads": threads}
    else:
        compute = compute_precision(target.runtime, target.precision, info.get("applied") or {})
        if compute and compute != target.precision and target.precision != "int8":
            thresholds = settings.overrides.for_precision(compute)  # judged at the precision it computed in
        evaluation = evaluate_artifact(logits, samples.reference_logits, samples.labels, thresholds,
                                       accuracy_meaningful=accuracy_meaningful)
        # The report keeps the runner's version, threads and batch (not its applied options).
        info = {key: info[key] for key in ("runtime_version", "threads", "batch")}
    return ArtifactResult(
        name=target.name, path=str(target.path), format=target.format, runtime=target.runtime,
        precision=target.precision, samples=int(samples.inputs.shape[0]), thresholds=thresholds,
        checks=evaluation["checks"], reference_source=samples.reference_source,
        accuracy_meaningful=accuracy_meaningful, seconds=time.perf_counter() - begun, **info,
        **evaluation["metrics"], compute_precision=compute, tuned_from=target.tuned_from,
        layers_in_float=target.layers_in_float,
    )


def _did_not_run(exc: Exception, samples: Samples) -> dict[str, Any]:
    """The evaluation of an artifact whose run raised: one failed `runs` check naming the error."""
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    metrics: dict[str, Any] = dict.fromkeys(_METRICS)
    metrics["reference_top1"] = None if samples.labels is None else top1(samples.reference_logits, samples.labels)
    return {"metrics": metrics, "checks": [Check("runs", None, None, "==", False, f"{type(exc).__name__}: {message}")]}


__all__ = ["Target", "evaluate_artifact", "guess_precision", "run_targets"]
