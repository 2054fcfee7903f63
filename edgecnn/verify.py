"""Accuracy parity over any Runner: does the deployed artifact still classify like the PyTorch model?

For every artifact of a bundle (or one artifact file) `verify` runs the same preprocessed samples
through the artifact's runtime and through the PyTorch fp32 reference, then reports:

* ``top1`` and ``reference_top1`` (percent, against the labels) and ``drop`` (points);
* ``agreement``: the fraction of samples whose top-1 class equals the reference's top-1;
* ``max_abs_diff`` and ``cosine`` (mean per-sample cosine similarity) of the logit vectors;
* the thresholds used, the checks that failed by name, and ``passed``.

The reference is the PyTorch model re-run live when torch imports and the checkpoint the bundle
was exported from exists ("pytorch-live"); otherwise the logits the exporter stored in the
bundle's golden set ("golden"). The latter is what a device does: this module imports only numpy
and edgecnn's numpy-only modules at the top, and torch only inside the live reference run.

Thresholds default per precision (``DEFAULT_THRESHOLDS``): fp32/fp16 must agree with the
reference on 99.5 % of samples; int8 may lose 1.0 point of top-1 and must agree on 97 %. When
the model's weights were random (``accuracy_meaningful`` false) the accuracy checks are skipped
and only agreement-like checks run.
"""

from __future__ import annotations

import importlib.util
import math
import platform
import re
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

import edgecnn
from edgecnn.atomic import write_text_atomic
from edgecnn.errors import BadInputError, CheckFailedError, MissingDependencyError

SCHEMA = "edgecnn.verify/1"

REFERENCE_LIVE = "pytorch-live"
REFERENCE_GOLDEN = "golden"

THRESHOLD_NAMES = ("max_drop", "min_agreement", "min_cosine", "max_abs_diff")
# Checks that compare against the labels: meaningless when the weights were random.
ACCURACY_CHECKS = frozenset({"drop"})

# (samples, batch) sizes a runner is fed: large enough to amortise the call, small enough for a Pi.
DEFAULT_BATCH = 32

# A live PyTorch run of the recorded checkpoint must reproduce the golden logits this closely,
# or the checkpoint changed after export and cannot be the reference.
_LIVE_MIN_AGREEMENT = 0.99
_LIVE_MIN_COSINE = 0.9999

Progress = Callable[[str, int, int], None]


class VerifyFailedError(CheckFailedError):
    """At least one artifact failed a parity check (exit 1); `report` holds every result."""

    def __init__(self, message: str, report: "VerifyReport"):
        self.report = report
        super().__init__(message)


# ------------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits for one artifact; None switches a check off."""

    max_drop: float | None = None  # top-1 points the artifact may lose against the reference
    min_agreement: float | None = None  # fraction of samples whose top-1 must match the reference
    min_cosine: float | None = None  # mean cosine similarity of logits
    max_abs_diff: float | None = None  # largest absolute logit difference

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(min_agreement=0.995),
    "fp16": Thresholds(min_agreement=0.995),
    "int8": Thresholds(max_drop=1.0, min_agreement=0.97),
}


@dataclass
class ThresholdOverrides:
    """What the user set: `everywhere` applies to every precision, `per_precision` wins over it.

    A value of None inside a mapping means "switch this check off"; a missing key keeps the default.
    """

    everywhere: dict[str, float | None] = field(default_factory=dict)
    per_precision: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def for_precision(self, precision: str) -> Thresholds:
        """The thresholds an artifact of `precision` is held to."""
        base = DEFAULT_THRESHOLDS.get(precision.lower(), DEFAULT_THRESHOLDS["fp32"])
        merged = base.to_dict()
        merged.update(self.everywhere)
        merged.update(self.per_precision.get(precision.lower(), {}))
        return Thresholds(**merged)


def check_threshold(name: str, value: float | None) -> float | None:
    """Validate one threshold value (fractions in [0, 1], points and differences >= 0)."""
    if name not in THRESHOLD_NAMES:
        raise BadInputError(f"unknown threshold {name!r}: use one of {', '.join(THRESHOLD_NAMES)}")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"threshold {name} must be a number, got {value!r}")
    value = float(value)
    if name in ("min_agreement", "min_cosine") and not (-1.0 if name == "min_cosine" else 0.0) <= value <= 1.0:
        hint = " (a fraction: 0.97 means 97 %)" if name == "min_agreement" else ""
        raise BadInputError(f"{name.replace('_', '-')} must be within [0, 1]{hint}, got {value:g}")
    if name in ("max_drop", "max_abs_diff") and value < 0:
        raise BadInputError(f"{name.replace('_', '-')} must be >= 0, got {value:g}")
    return value


def parse_threshold_option(text: str) -> tuple[str | None, str, float | None]:
    """'int8.max_drop=2' -> ('int8', 'max_drop', 2.0); 'min_agreement=0.9' -> (None, ...); '=off' -> None."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise BadInputError(
            f"--threshold takes [PRECISION.]NAME=VALUE (e.g. int8.max_drop=2, fp32.min_agreement=0.99), got {text!r}"
        )
    precision, dot, name = key.strip().lower().rpartition(".")
    if dot and precision not in DEFAULT_THRESHOLDS:
        raise BadInputError(
            f"--threshold {text!r}: unknown precision {precision!r} (use {', '.join(DEFAULT_THRESHOLDS)})"
        )
    name = name.replace("-", "_")
    raw = raw.strip().lower()
    if raw in ("off", "none"):
        value = None
    else:
        try:
            value = float(raw)
        except ValueError:
            raise BadInputError(f"--threshold {text!r}: {raw!r} is not a number (or 'off')") from None
    return (precision or None), name, check_threshold(name, value)


def build_overrides(*, max_drop: float | None = None, min_agreement: float | None = None,
                    min_cosine: float | None = None, max_abs_diff: float | None = None,
                    thresholds: Iterable[str] = ()) -> ThresholdOverrides:
    """ThresholdOverrides from the CLI's options (flags apply everywhere, --threshold per precision)."""
    overrides = ThresholdOverrides()
    for name, value in (("max_drop", max_drop), ("min_agreement", min_agreement),
                        ("min_cosine", min_cosine), ("max_abs_diff", max_abs_diff)):
        if value is not None:
            overrides.everywhere[name] = check_threshold(name, value)
    for text in thresholds:
        precision, name, value = parse_threshold_option(text)
        if precision is None:
            overrides.everywhere[name] = value
        else:
            overrides.per_precision.setdefault(precision, {})[name] = value
    return overrides


# ----------------------------------------------------------------------------------- metrics


@dataclass
class Check:
    """One threshold applied to one metric."""

    name: str  # drop | agreement | cosine | max_abs_diff | finite | output_shape | runs
    value: float | None
    threshold: float | None
    op: str  # "<=", ">=" or "=="
    passed: bool | None  # None when skipped
    reason: str | None = None  # why it was skipped

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.name} skipped ({self.reason})"
        if self.value is None or self.threshold is None:
            return f"{self.name} {'ok' if self.passed else 'failed'}" + (f" ({self.reason})" if self.reason else "")
        return (f"{self.name} {format_metric(self.name, self.value)} {self.op} "
                f"{format_metric(self.name, self.threshold, threshold=True)}")


@dataclass
class ArtifactResult:
    """Every number verify reports for one artifact."""

    name: str
    path: str
    format: str
    runtime: str
    precision: str
    samples: int
    top1: float | None
    reference_top1: float | None
    drop: float | None
    agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    cosine: float | None
    min_cosine: float | None
    reference_source: str
    thresholds: Thresholds
    checks: list[Check]
    accuracy_meaningful: bool
    runtime_version: str | None = None
    threads: int | None = None
    batch: int | None = None
    seconds: float = 0.0

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.passed is False]

    @property
    def passed(self) -> bool:
        return not self.failed_checks

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "runtime": self.runtime,
            "precision": self.precision,
            "samples": self.samples,
            "top1": _round(self.top1, 3),
            "reference_top1": _round(self.reference_top1, 3),
            "drop": _round(self.drop, 3),
            "agreement": _round(self.agreement, 6),
            "max_abs_diff": _round(self.max_abs_diff, 6),
            "mean_abs_diff": _round(self.mean_abs_diff, 6),
            "cosine": _round(self.cosine, 6),
            "min_cosine": _round(self.min_cosine, 6),
            "reference_source": self.reference_source,
            "accuracy_meaningful": self.accuracy_meaningful,
            "thresholds": self.thresholds.to_dict(),
            "checks": [
                {**asdict(c), "value": _round(c.value, 6)} for c in self.checks
            ],
            "failed_checks": self.failed_checks,
            "passed": self.passed,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "batch": self.batch,
            "seconds": round(self.seconds, 3),
        }


def top1_percent(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(np.asarray(logits).argmax(1) == np.asarray(labels)) * 100.0)


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
    from edgecnn.compare import compare_logits

    logits = np.asarray(logits, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    metrics: dict[str, Any] = dict.fromkeys(
        ("top1", "reference_top1", "drop", "agreement", "max_abs_diff", "mean_abs_diff", "cosine", "min_cosine")
    )
    checks: list[Check] = []
    if labels is not None:
        metrics["reference_top1"] = top1_percent(reference, labels)
    if logits.ndim != 2 or logits.shape != reference.shape:
        # A wrong class count or sample count: nothing else can be compared.
        checks.append(Check("output_shape", None, None, "==", False,
                            f"logits {list(logits.shape)} vs reference {list(reference.shape)}"))
        return {"metrics": metrics, "checks": checks}
    finite = bool(np.all(np.isfinite(logits)))
    checks.append(Check("finite", None, None, "==", finite, None if finite else "NaN or inf in the logits"))
    if labels is not None:
        metrics["top1"] = top1_percent(logits, labels)
        metrics["drop"] = metrics["reference_top1"] - metrics["top1"]
    if finite:
        parity = compare_logits(reference, logits)
        metrics.update(agreement=parity.top1_agreement, max_abs_diff=parity.max_abs_diff,
                       mean_abs_diff=parity.mean_abs_diff, cosine=parity.cosine, min_cosine=parity.min_cosine)
    else:
        metrics["agreement"] = float(np.mean(np.nan_to_num(logits, nan=-np.inf).argmax(1) == reference.argmax(1)))

    def add(name: str, value: float | None, threshold: float | None, op: str) -> None:
        if threshold is None:
            return
        if name in ACCURACY_CHECKS and (labels is None or not accuracy_meaningful):
            reason = "random weights: accuracy means nothing" if not accuracy_meaningful else \
                "the samples have no meaningful labels"
            checks.append(Check(name, value, threshold, op, None, reason))
            return
        if value is None:
            checks.append(Check(name, None, threshold, op, False, "not computable (non-finite logits)"))
            return
        # Round like the report does, so a value printed as equal to the limit never fails it.
        shown = round(value, 6)
        checks.append(Check(name, value, threshold, op, shown <= threshold if op == "<=" else shown >= threshold))

    add("drop", metrics["drop"], thresholds.max_drop, "<=")
    add("agreement", metrics["agreement"], thresholds.min_agreement, ">=")
    add("cosine", metrics["cosine"], thresholds.min_cosine, ">=")
    add("max_abs_diff", metrics["max_abs_diff"], thresholds.max_abs_diff, "<=")
    return {"metrics": metrics, "checks": checks}


# ----------------------------------------------------------------------------- what to verify


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


@dataclass
class Samples:
    """Preprocessed inputs, their labels and the reference logits on them."""

    inputs: np.ndarray
    labels: np.ndarray | None  # None when they mean nothing (a noise golden set, other data)
    source: str  # "golden" or "data:SPEC"
    golden_logits: np.ndarray | None = None  # when the inputs are the golden set
    reference_logits: np.ndarray | None = None
    reference_source: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """What `verify` found, for the table, the JSON, the JUnit file and the Markdown summary."""

    model: str
    target: str | None
    bundle: str | None
    samples: int
    samples_source: str
    reference_source: str
    reference_top1: float | None
    accuracy_meaningful: bool
    checkpoint: str | None
    artifacts: list[ArtifactResult]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    @property
    def failed(self) -> list[ArtifactResult]:
        return [a for a in self.artifacts if not a.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "target": self.target,
            "bundle": self.bundle,
            "samples": self.samples,
            "samples_source": self.samples_source,
            "reference_source": self.reference_source,
            "reference_top1": _round(self.reference_top1, 3),
            "checkpoint": self.checkpoint,
            "accuracy_meaningful": self.accuracy_meaningful,
            "passed": self.passed,
            "failed": [a.name for a in self.failed],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "defaults": {k: v.to_dict() for k, v in DEFAULT_THRESHOLDS.items()},
            "notes": list(self.notes),
            "edgecnn_version": edgecnn.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
        }

    def failure_message(self) -> str:
        """One line naming every failed artifact and its failed checks."""
        parts = [f"{a.name}: {', '.join(a.failed_checks)}" for a in self.failed]
        return f"{len(self.failed)} of {len(self.artifacts)} artifact(s) failed verification ({'; '.join(parts)})"


# ------------------------------------------------------------------------------- running


def guess_precision(path: Path) -> str:
    """fp32 / fp16 / int8 from an artifact's file name, fp32 when it does not say."""
    tokens = set(re.split(r"[^a-z0-9]+", path.name.lower()))
    for precision in ("int8", "fp16", "fp32"):
        if precision in tokens or any(t.endswith(precision) or t.startswith(precision) for t in tokens):
            return precision
    return "fp32"


def _pad_batches(inputs: np.ndarray, batch: int) -> Iterable[tuple[np.ndarray, int]]:
    """Fixed-size chunks (the last padded with zeros) and how many rows of each are real.

    A constant batch size means a runtime that compiles per shape (OpenVINO) compiles once.
    """
    for start in range(0, inputs.shape[0], batch):
        chunk = inputs[start:start + batch]
        real = chunk.shape[0]
        if real < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - real, *chunk.shape[1:]), dtype=chunk.dtype)])
        yield np.ascontiguousarray(chunk, dtype=np.float32), real


def _load_runner(runtime: str, path: Path | None, *, threads: int, batch: int, options: dict[str, Any]):
    """(runner, batch): loaded for `batch`, or for the artifact's own fixed batch when it has one."""
    from edgecnn.backends import get_runner
    from edgecnn.backends.runner import FixedBatchError

    runner = get_runner(runtime)
    try:
        runner.load(path, threads=threads, batch=batch, **options)
        return runner, batch
    except FixedBatchError:
        fixed = runner.fixed_batch or 1  # a static model that cannot be reshaped: run one by one
        if fixed == batch:
            raise
    runner = get_runner(runtime)
    runner.load(path, threads=threads, batch=fixed, **options)
    return runner, fixed


def run_logits(runtime: str, path: Path | None, inputs: np.ndarray, *, threads: int, batch: int,
               options: dict[str, Any] | None = None, label: str = "",
               progress: Progress | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits of `inputs` through one runtime, and what the runner reported (version, batch, ...)."""
    runner, batch = _load_runner(runtime, path, threads=threads, batch=batch, options=dict(options or {}))
    try:
        outputs = []
        done = 0
        for chunk, real in _pad_batches(inputs, batch):
            outputs.append(np.asarray(runner.run(chunk), dtype=np.float32)[:real])
            done += real
            if progress is not None:
                progress(label, done, inputs.shape[0])
        info = {"runtime_version": runner.version, "threads": runner.threads, "batch": batch}
    finally:
        runner.close()
    return np.concatenate(outputs), info


def torch_available() -> bool:
    """Whether torch can be imported here, without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or broken installation
        return False


def resolve_reference(samples: Samples, checkpoint: Path | None, *, threads: int, batch: int = DEFAULT_BATCH,
                      input_shape: tuple[int, int, int] | None = None, live: bool = True,
                      progress: Progress | None = None) -> None:
    """Fill `samples.reference_logits`: PyTorch live when possible, else the golden logits.

    A live run that does not reproduce the golden logits means the checkpoint changed after
    export; the golden logits (what the artifacts were exported from) are then the reference.
    """
    reason = None
    if not live:
        reason = "--reference-source golden"
    elif checkpoint is None:
        reason = "the bundle records no checkpoint that exists here"
    elif not torch_available():
        reason = "torch is not installed here"
    if reason is None:
        options = {"precision": "fp32", **({"input_shape": list(input_shape)} if input_shape else {})}
        try:
            live_logits, _ = run_logits("torch", checkpoint, samples.inputs, threads=threads, batch=batch,
                                        options=options, label="pytorch reference", progress=progress)
        except MissingDependencyError:
            reason = "torch cannot be imported here"
        else:
            if samples.golden_logits is not None and not _matches_golden(live_logits, samples.golden_logits):
                samples.notes.append(
                    f"the checkpoint {checkpoint} no longer reproduces the golden logits recorded at export "
                    "(changed since?): the golden logits are the reference"
                )
            else:
                samples.reference_logits, samples.reference_source = live_logits, REFERENCE_LIVE
                return
    if samples.golden_logits is None:
        raise BadInputError(
            f"no PyTorch reference for {samples.source} ({reason}): verify on the bundle's golden set "
            "(omit --data), or run where torch and the checkpoint are (pass --reference CHECKPOINT)"
        )
    if reason is not None and reason != "--reference-source golden" and checkpoint is not None:
        samples.notes.append(f"reference: the golden logits ({reason})")
    samples.reference_logits, samples.reference_source = samples.golden_logits, REFERENCE_GOLDEN


def _matches_golden(live: np.ndarray, golden: np.ndarray) -> bool:
    from edgecnn.compare import compare_logits

    if live.shape != golden.shape:
        return False
    parity = compare_logits(golden, live)
    return parity.top1_agreement >= _LIVE_MIN_AGREEMENT and parity.cosine >= _LIVE_MIN_COSINE


def _cross_check_live(checkpoint: Path, golden: Mapping[str, np.ndarray], *, threads: int,
                      input_shape) -> None:
    """With --data, the live reference must still be the exported model: compare it on the golden set."""
    options = {"precision": "fp32", **({"input_shape": list(input_shape)} if input_shape else {})}
    live, _ = run_logits("torch", checkpoint, golden["inputs"], threads=threads, batch=DEFAULT_BATCH, options=options)
    if not _matches_golden(live, golden["logits"]):
        raise BadInputError(
            f"the checkpoint {checkpoint} does not reproduce this bundle's golden logits: it changed after "
            "export, so it is no reference for these artifacts (re-export, or verify on the golden set "
            "with --reference-source golden)"
        )


# --------------------------------------------------------------------------- data matching


def class_count_of(bundle, golden: Mapping[str, np.ndarray] | None = None) -> int | None:
    """How many classes the bundle's model predicts, from whatever the manifest records."""
    if bundle.class_names:
        return len(bundle.class_names)
    model = bundle.manifest.get("model") or {}
    if isinstance(model.get("num_classes"), int):
        return int(model["num_classes"])
    if golden is not None:
        return int(np.asarray(golden["logits"]).shape[1])
    return None


def data_mismatches(preprocess, dataset, num_classes: int | None) -> list[str]:
    """Why `dataset` (fed through `preprocess`) is not the data the model was exported for; [] when it is.

    Checked: class count; class names; image size (the preprocessing never shrinks the training
    data, so a bundle input smaller than the data's images means other data); and, for a model
    normalised with its training data's statistics, those statistics measured on this data.
    """
    problems = []
    if num_classes is not None and dataset.num_classes != num_classes:
        problems.append(f"class count: the model predicts {num_classes} classes, the data has {dataset.num_classes}")
    names = tuple(getattr(preprocess, "class_names", ()) or ())
    if names and len(names) == dataset.num_classes and tuple(dataset.class_names) != names:
        shown = lambda values: ", ".join(list(values)[:4]) + (", ..." if len(values) > 4 else "")  # noqa: E731
        problems.append(f"class names: the model's are [{shown(names)}], the data's [{shown(dataset.class_names)}]")
    if preprocess is None:
        return problems
    if dataset.image_size > preprocess.size:
        problems.append(
            f"size: the model takes {preprocess.size}x{preprocess.size}, the data's images are "
            f"{dataset.image_size} px (training never shrinks its data)"
        )
    if preprocess.normalization == "dataset" and len(dataset.train):
        from edgecnn.data import dataset_statistics

        mean, std = dataset_statistics(dataset.train.images, preprocess)
        # Same data, another copy or seed: equal to ~1e-3. Other data: off by tenths.
        if max(abs(a - b) for a, b in zip(mean, preprocess.mean)) > 0.02 or \
                max(abs(a - b) for a, b in zip(std, preprocess.std)) > 0.02:
            problems.append(
                f"mean/std: the model was normalised with mean {_fmt_list(preprocess.mean)} std "
                f"{_fmt_list(preprocess.std)} ({preprocess.channels} channel(s)), this data gives mean "
                f"{_fmt_list(mean)} std {_fmt_list(std)}"
            )
    return problems


def _fmt_list(values) -> str:
    return "[" + ", ".join(f"{float(v):.3f}" for v in values) + "]"


def load_data_samples(data: str, preprocess, *, num_classes: int | None, data_root=None, seed: int = 0,
                      limit: int | None = None) -> Samples:
    """The test split of a data SPEC, preprocessed as the model expects; BadInputError on a mismatch."""
    from edgecnn.data import load_data, preprocessed_split

    if preprocess is None:
        raise BadInputError("--data needs the model's preprocessing, and the bundle records none: re-export it")
    dataset = load_data(data, data_root=data_root, seed=seed)
    problems = data_mismatches(preprocess, dataset, num_classes)
    if problems:
        raise BadInputError(f"--data {data} does not match the model's preprocessing: {'; '.join(problems)}")
    inputs, labels = preprocessed_split(dataset, "test", preprocess, limit=limit, seed=seed)
    if len(labels) == 0:
        raise BadInputError(f"--data {data} has an empty test split")
    return Samples(inputs=inputs, labels=labels, source=f"data:{data}")


# ------------------------------------------------------------------------------- entry points


@dataclass
class VerifySettings:
    """How to verify (everything but what)."""

    data: str | None = None
    data_root: str | Path | None = None
    runtime: str | None = None
    threads: int | None = None
    overrides: ThresholdOverrides = field(default_factory=ThresholdOverrides)
    reference: str | Path | None = None  # a checkpoint, a bundle or a golden .npz
    reference_source: str = "auto"  # auto | pytorch | golden
    precision: str | None = None  # for a single artifact file
    limit: int | None = None
    batch: int = DEFAULT_BATCH
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.reference_source not in ("auto", "pytorch", "golden"):
            raise BadInputError(f"--reference-source must be auto, pytorch or golden, got {self.reference_source!r}")
        if self.threads is not None and self.threads < 1:
            raise BadInputError(f"--threads must be at least 1, got {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise BadInputError(f"--limit must be at least 1, got {self.limit}")
        if self.batch < 1:
            raise BadInputError(f"--batch must be at least 1, got {self.batch}")
        if self.precision is not None and self.precision.lower() not in DEFAULT_THRESHOLDS:
            raise BadInputError(f"--precision must be one of {', '.join(DEFAULT_THRESHOLDS)}, got {self.precision!r}")


def is_bundle_path(path: Path) -> bool:
    return path.is_dir() or path.name == "manifest.json"


def verify(path: str | Path, settings: VerifySettings | None = None, *,
           progress: Progress | None = None) -> VerifyReport:
    """Verify a bundle (folder or manifest.json) or one artifact file against its reference."""
    settings = settings or VerifySettings()
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"not found: {path}")
    if is_bundle_path(path):
        return _verify_bundle(path, settings, progress)
    return _verify_file(path, settings, progress)


def _verify_bundle(path: Path, settings: VerifySettings, progress: Progress | None) -> VerifyReport:
    from edgecnn.bundle import checkpoint_of, default_threads_for
    from edgecnn.bundle import load_bundle
    from edgecnn.backends import resolve_runtime

    bundle = load_bundle(path)
    wanted = resolve_runtime(settings.runtime) if settings.runtime else None
    entries = [e for e in bundle.artifacts if wanted is None or resolve_runtime(e.runtime) == wanted]
    if not entries:
        present = sorted({e.runtime for e in bundle.artifacts}) or ["none"]
        what = f"{wanted} artifact" if wanted else "artifacts"
        raise BadInputError(f"the bundle at {bundle.root} has no {what} (it has: {', '.join(present)})")
    # Every hash first: a tampered bundle is refused before anything runs.
    for entry in entries:
        bundle.check_integrity(entry)
    threads = settings.threads or default_threads_for(bundle)
    model = bundle.manifest.get("model") or {}
    accuracy_meaningful = bool(model.get("accuracy_meaningful", True))
    checkpoint = _reference_checkpoint(settings.reference) or checkpoint_of(bundle)
    input_shape = bundle.input_shape or (bundle.preprocess.input_shape if bundle.preprocess else None)
    golden = bundle.load_golden() if bundle.golden_path is not None else None
    live = settings.reference_source != "golden"

    if settings.data:
        if settings.reference_source == "golden":
            raise BadInputError("--reference-source golden verifies on the golden set: drop --data")
        seed = settings.seed if settings.seed is not None else _manifest_seed(bundle.manifest)
        samples = load_data_samples(settings.data, bundle.preprocess, num_classes=class_count_of(bundle, golden),
                                    data_root=settings.data_root or model.get("data_root"), seed=seed,
                                    limit=settings.limit)
        if checkpoint is not None and torch_available() and golden is not None:
            _cross_check_live(checkpoint, golden, threads=threads, input_shape=input_shape)
    else:
        if golden is None:
            raise BadInputError(
                f"the bundle at {bundle.root} has no golden set: pass --data SPEC to verify on a data set"
            )
        samples = _golden_samples(golden, settings.limit, labels_meaningful=_golden_labels_meaningful(bundle))
    if settings.reference_source == "pytorch" and (checkpoint is None or not torch_available()):
        raise BadInputError(
            "--reference-source pytorch needs torch and the checkpoint the bundle was exported from "
            f"({'none recorded' if checkpoint is None else 'torch is not installed'}): pass --reference CHECKPOINT"
        )
    resolve_reference(samples, checkpoint, threads=threads, batch=settings.batch, input_shape=input_shape,
                      live=live, progress=progress)

    targets = []
    for entry in entries:
        shape = (entry.input or {}).get("shape") or (list(input_shape) if input_shape else None)
        options: dict[str, Any] = {"precision": entry.precision}
        if shape:
            options["input_shape"] = list(shape)
        if (entry.input or {}).get("layout"):
            options["layout"] = entry.input["layout"]
        fixed = (entry.input or {}).get("batch")
        targets.append(Target(
            name=entry.path, path=bundle.artifact_path(entry), format=entry.format,
            runtime=resolve_runtime(entry.runtime), precision=entry.precision.lower(), options=options,
            batch=int(fixed) if isinstance(fixed, int) and not isinstance(fixed, bool) and fixed > 0 else None,
        ))
    report = _run_targets(targets, samples, settings, threads=threads, accuracy_meaningful=accuracy_meaningful,
                          progress=progress)
    report.model = bundle.model_name
    report.target = bundle.target
    report.bundle = str(bundle.root)
    report.checkpoint = str(checkpoint) if checkpoint else None
    return report


def _verify_file(path: Path, settings: VerifySettings, progress: Progress | None) -> VerifyReport:
    from edgecnn.backends import resolve_runtime, runtime_for_path
    from edgecnn.backends.runner import default_threads

    if not path.is_file():
        raise BadInputError(f"not a file: {path}")
    if settings.reference is None:
        raise BadInputError(
            f"{path.name} is a single artifact: pass --reference CHECKPOINT (the model it was exported from), "
            "or --reference BUNDLE / golden.npz for a golden set"
        )
    runtime = resolve_runtime(settings.runtime) if settings.runtime else runtime_for_path(path)
    if runtime == "torch":
        raise BadInputError(f"{path.name} is a PyTorch checkpoint, the reference itself: verify an exported artifact")
    precision = (settings.precision or guess_precision(path)).lower()
    threads = settings.threads or default_threads()
    reference = Path(settings.reference).expanduser()
    if not reference.exists():
        raise BadInputError(f"--reference {reference}: not found")
    accuracy_meaningful = True
    checkpoint: Path | None = None
    model_name = path.stem
    preprocess = None

    if is_bundle_path(reference):
        from edgecnn.bundle import checkpoint_of
        from edgecnn.bundle import load_bundle

        bundle = load_bundle(reference)
        model_name = bundle.model_name
        preprocess = bundle.preprocess
        accuracy_meaningful = bool((bundle.manifest.get("model") or {}).get("accuracy_meaningful", True))
        checkpoint = checkpoint_of(bundle)
        golden = bundle.load_golden()
        if settings.data:
            samples = load_data_samples(settings.data, preprocess, num_classes=class_count_of(bundle, golden),
                                        data_root=settings.data_root,
                                        seed=settings.seed if settings.seed is not None else _manifest_seed(bundle.manifest),
                                        limit=settings.limit)
        else:
            samples = _golden_samples(golden, settings.limit, labels_meaningful=_golden_labels_meaningful(bundle))
    elif reference.suffix == ".npz":
        golden = _read_golden_file(reference)
        if settings.data:
            raise BadInputError("--data needs a checkpoint or bundle as --reference, not a bare golden .npz")
        samples = _golden_samples(golden, settings.limit)
    else:
        checkpoint, meta = _checkpoint_metadata(reference)
        preprocess = meta["preprocess_spec"]
        model_name = str(meta.get("arch", model_name))
        data = settings.data or meta.get("data")
        if not data:
            raise BadInputError(f"{reference} records no data SPEC: pass --data SPEC")
        seed = settings.seed if settings.seed is not None else int(meta.get("seed") or 0)
        samples = load_data_samples(data, preprocess, num_classes=int(meta["num_classes"]),
                                    data_root=settings.data_root or meta.get("data_root"), seed=seed,
                                    limit=settings.limit)
    if settings.reference_source == "pytorch" and (checkpoint is None or not torch_available()):
        raise BadInputError("--reference-source pytorch needs torch and a checkpoint (--reference CHECKPOINT)")
    input_shape = preprocess.input_shape if preprocess is not None else tuple(samples.inputs.shape[1:])
    resolve_reference(samples, checkpoint, threads=threads, batch=settings.batch, input_shape=input_shape,
                      live=settings.reference_source != "golden", progress=progress)
    options = {"precision": precision, "input_shape": list(input_shape)}
    target = Target(name=path.name, path=path, format=path.suffix.lstrip(".").lower(), runtime=runtime,
                    precision=precision, options=options)
    report = _run_targets([target], samples, settings, threads=threads, accuracy_meaningful=accuracy_meaningful,
                          progress=progress)
    report.model = model_name
    report.checkpoint = str(checkpoint) if checkpoint else None
    if settings.precision is None:
        report.notes.append(f"precision {precision} (from the file name; pass --precision to say otherwise)")
    return report


def _run_targets(targets: list[Target], samples: Samples, settings: VerifySettings, *, threads: int,
                 accuracy_meaningful: bool, progress: Progress | None) -> VerifyReport:
    started = time.perf_counter()
    results = []
    for target in targets:
        thresholds = settings.overrides.for_precision(target.precision)
        # TFLite files carry a static batch (1 unless the manifest says otherwise); resizing one
        # is not safe for every graph, so it runs at its own batch.
        batch = target.batch or (1 if target.runtime == "tflite" else settings.batch)
        begun = time.perf_counter()
        try:
            logits, info = run_logits(target.runtime, target.path, samples.inputs, threads=threads, batch=batch,
                                      options=target.options, label=target.name, progress=progress)
        except MissingDependencyError:
            raise  # this machine lacks the runtime: the user installs the extra (exit 2)
        except Exception as exc:  # noqa: BLE001 - the artifact does not run here: that is its failure
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            metrics = dict.fromkeys(("top1", "drop", "agreement", "max_abs_diff", "mean_abs_diff", "cosine",
                                     "min_cosine"))
            metrics["reference_top1"] = None if samples.labels is None else \
                top1_percent(samples.reference_logits, samples.labels)
            evaluation = {"metrics": metrics,
                          "checks": [Check("runs", None, None, "==", False, f"{type(exc).__name__}: {message}")]}
            info = {"batch": batch, "threads": threads}
        else:
            evaluation = evaluate_artifact(logits, samples.reference_logits, samples.labels, thresholds,
                                           accuracy_meaningful=accuracy_meaningful)
        metrics = evaluation["metrics"]
        results.append(ArtifactResult(
            name=target.name, path=str(target.path), format=target.format, runtime=target.runtime,
            precision=target.precision, samples=int(samples.inputs.shape[0]), thresholds=thresholds,
            checks=evaluation["checks"], reference_source=samples.reference_source,
            accuracy_meaningful=accuracy_meaningful, seconds=time.perf_counter() - begun, **info, **metrics,
        ))
    notes = list(samples.notes)
    if samples.labels is None and accuracy_meaningful:
        notes.insert(0, "the samples carry no meaningful labels: only agreement with the reference is checked")
    if not accuracy_meaningful:
        notes.insert(0, "random weights: top-1 means nothing, so only agreement with the reference is checked")
    return VerifyReport(
        model="model", target=None, bundle=None, samples=int(samples.inputs.shape[0]),
        samples_source=samples.source, reference_source=samples.reference_source,
        reference_top1=None if samples.labels is None else top1_percent(samples.reference_logits, samples.labels),
        accuracy_meaningful=accuracy_meaningful,
        checkpoint=None, artifacts=results, notes=notes, seconds=time.perf_counter() - started,
    )


def _golden_samples(golden: Mapping[str, np.ndarray], limit: int | None, *,
                    labels_meaningful: bool = True) -> Samples:
    inputs, labels, logits = (np.asarray(golden[k]) for k in ("inputs", "labels", "logits"))
    if inputs.ndim != 4 or logits.ndim != 2 or not (len(inputs) == len(labels) == len(logits)) or len(inputs) == 0:
        raise BadInputError(
            f"the golden set is malformed (inputs {list(inputs.shape)}, labels {list(labels.shape)}, "
            f"logits {list(logits.shape)}): re-export the bundle"
        )
    if limit is not None:
        inputs, labels, logits = inputs[:limit], labels[:limit], logits[:limit]
    # The exporter stores -1 where a label means nothing (noise, or data the model was not trained on).
    meaningful = labels_meaningful and bool(np.all(labels >= 0))
    return Samples(inputs=np.ascontiguousarray(inputs, dtype=np.float32),
                   labels=labels.astype(np.int64) if meaningful else None,
                   source="golden", golden_logits=logits.astype(np.float32))


def _read_golden_file(path: Path) -> dict[str, np.ndarray]:
    from edgecnn.bundle import GOLDEN_KEYS

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in GOLDEN_KEYS if k not in data.files]
            if missing:
                raise BadInputError(f"{path} lacks {', '.join(missing)}: not an edgecnn golden set")
            return {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path} as a golden set: {exc}") from None


def _reference_checkpoint(reference) -> Path | None:
    """--reference as a checkpoint file (or a folder with model.pt), None for anything else."""
    if reference is None:
        return None
    path = Path(reference).expanduser()
    if is_bundle_path(path) and (path.name == "manifest.json" or (path / "manifest.json").is_file()):
        return None
    if path.is_dir():
        path = path / "model.pt"
    if path.suffix == ".npz":
        return None
    if not path.is_file():
        raise BadInputError(f"--reference {reference}: no such checkpoint")
    return path


def _checkpoint_metadata(reference: Path) -> tuple[Path, dict]:
    """(checkpoint file, its metadata); needs torch (a checkpoint is a torch file)."""
    path = _reference_checkpoint(reference)
    if not torch_available():
        raise MissingDependencyError("torch", "torch", "reading the --reference checkpoint")
    from edgecnn.checkpoint import read_checkpoint

    return path, read_checkpoint(path)


def _golden_labels_meaningful(bundle) -> bool:
    golden = bundle.manifest.get("golden")
    return not isinstance(golden, dict) or golden.get("labels_meaningful", True) is not False


def _manifest_seed(manifest: Mapping[str, Any]) -> int:
    """The split seed the model was trained with (so --data's test split is really held out)."""
    model = manifest.get("model") or {}
    for holder in (model, model.get("metrics") or {}, manifest.get("data") or {}):
        value = holder.get("seed") if isinstance(holder, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


# ------------------------------------------------------------------------ JUnit and Markdown


def format_metric(name: str, value: float | None, *, threshold: bool = False) -> str:
    """A metric (or, with `threshold`, its limit) as people read it: 97.00 %, +0.37 pts, 0.99871."""
    if value is None:
        return "-"
    if name in ("agreement", "min_agreement"):
        return f"{value * 100:.2f} %"
    if name in ("drop", "max_drop"):
        # A drop carries its sign (negative: the artifact did better); a limit does not.
        return f"{value:.2f} pts" if threshold or name == "max_drop" else f"{value:+.2f} pts"
    if name in ("cosine", "min_cosine"):
        return f"{value:.5f}"
    return f"{value:.4g}"


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def junit_xml(report: VerifyReport) -> str:
    """The report as JUnit XML: one testsuite, one testcase per artifact, a failure per failed artifact."""
    failures = len(report.failed)
    suite_name = f"edgecnn verify {report.model}" + (f" ({report.target})" if report.target else "")
    root = ET.Element("testsuites", name="edgecnn verify", tests=str(len(report.artifacts)),
                      failures=str(failures), errors="0", time=f"{report.seconds:.3f}")
    suite = ET.SubElement(
        root, "testsuite", name=suite_name, tests=str(len(report.artifacts)), failures=str(failures),
        errors="0", skipped="0", time=f"{report.seconds:.3f}",
        timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname(),
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (("model", report.model), ("target", report.target), ("bundle", report.bundle),
                       ("samples", report.samples), ("samples_source", report.samples_source),
                       ("reference_source", report.reference_source),
                       ("reference_top1", _round(report.reference_top1, 3)),
                       ("accuracy_meaningful", report.accuracy_meaningful),
                       ("edgecnn_version", edgecnn.__version__), ("python", platform.python_version())):
        if value is not None:
            ET.SubElement(properties, "property", name=key, value=str(value))
    classname = f"edgecnn.verify.{re.sub(r'[^A-Za-z0-9_]+', '_', report.model)}"
    for result in report.artifacts:
        case = ET.SubElement(suite, "testcase", classname=classname,
                             name=f"{result.name} [{result.runtime} {result.precision}]",
                             time=f"{result.seconds:.3f}")
        details = "\n".join(c.describe() for c in result.checks)
        if not result.passed:
            failure = ET.SubElement(case, "failure", type="CheckFailed",
                                    message=f"failed checks: {', '.join(result.failed_checks)} "
                                            f"({'; '.join(c.describe() for c in result.checks if c.passed is False)})")
            failure.text = details
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            f"{key}: {value}" for key, value in result.to_dict().items()
            if key not in ("checks", "thresholds", "name", "path")
        ) + "\n" + details
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: VerifyReport, path: str | Path) -> Path:
    """Write the JUnit XML atomically (temp file in the same folder, then rename)."""
    return write_text_atomic(Path(path), junit_xml(report))


def _md_cell(text: Any) -> str:
    # A pipe would end the cell and a newline the row: both are escaped.
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_summary(report: VerifyReport) -> str:
    """A Markdown heading, one table row per artifact, and the notes (for $GITHUB_STEP_SUMMARY)."""
    status = "all pass" if report.passed else f"{len(report.failed)} of {len(report.artifacts)} failed"
    icon = "✅" if report.passed else "❌"
    where = f" → {report.target}" if report.target else ""
    lines = [
        f"### {icon} edgecnn verify: {_md_cell(report.model)}{_md_cell(where)} — {status}",
        "",
        f"{report.samples} samples ({_md_cell(report.samples_source)}), reference: PyTorch fp32 "
        f"({'re-run live' if report.reference_source == REFERENCE_LIVE else 'golden logits'}), "
        f"reference top-1 {_fmt_pct(report.reference_top1)}.",
        "",
        "| artifact | runtime | precision | top-1 | ref top-1 | drop | agreement | max abs diff | cosine | result |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in report.artifacts:
        result = "✅ pass" if a.passed else "❌ fail: " + ", ".join(
            c.describe() for c in a.checks if c.passed is False)
        cells = [f"`{a.name}`", a.runtime, a.precision, _fmt_pct(a.top1), _fmt_pct(a.reference_top1),
                 format_metric("drop", a.drop), format_metric("agreement", a.agreement),
                 format_metric("max_abs_diff", a.max_abs_diff), format_metric("cosine", a.cosine), result]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    thresholds = sorted({(a.precision, _describe_thresholds(a.thresholds)) for a in report.artifacts})
    lines.append("Thresholds: " + "; ".join(f"{p}: {t}" for p, t in thresholds) + ".")
    for note in report.notes:
        lines.append("")
        lines.append(f"> {_md_cell(note)}")
    return "\n".join(lines) + "\n\n"


def append_summary(report: VerifyReport, path: str | Path) -> Path:
    """Append the Markdown summary to `path` ($GITHUB_STEP_SUMMARY is appended to, never replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = markdown_summary(report)
    with open(path, "a", encoding="utf-8") as handle:
        # A summary already there may not end with a blank line; a table glued to it would not parse.
        if path.stat().st_size and not _ends_with_blank_line(path):
            handle.write("\n")
        handle.write(text)
    return path


def _ends_with_blank_line(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 2))
        return handle.read().endswith(b"\n\n")


def _describe_thresholds(thresholds: Thresholds) -> str:
    parts = [f"{name.replace('_', ' ')} {format_metric(name, value)}"
             for name, value in thresholds.to_dict().items() if value is not None]
    return ", ".join(parts) or "none"


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} %"




__all__ = [
    "DEFAULT_THRESHOLDS",
    "REFERENCE_GOLDEN",
    "REFERENCE_LIVE",
    "ArtifactResult",
    "Check",
    "ThresholdOverrides",
    "Thresholds",
    "VerifyFailedError",
    "VerifyReport",
    "VerifySettings",
    "append_summary",
    "build_overrides",
    "data_mismatches",
    "evaluate_artifact",
    "guess_precision",
    "junit_xml",
    "markdown_summary",
    "parse_threshold_option",
    "verify",
    "write_junit",
]
