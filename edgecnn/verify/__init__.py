"""Accuracy parity over any Runner: does the deployed artifact still classify like the PyTorch model?

For every artifact of a bundle (or one artifact file) `verify` runs the same preprocessed samples
through the artifact's runtime and through the PyTorch fp32 reference, then reports:

* ``top1`` and ``reference_top1`` (percent, against the labels) and ``drop`` (points);
* ``agreement``: the fraction of samples whose top-1 class equals the reference's top-1;
* ``max_abs_diff`` and ``cosine`` (mean per-sample cosine similarity) of the logit vectors;
* the thresholds used, the checks that failed by name, and ``passed``.

The reference is the PyTorch model re-run live when torch imports and the checkpoint the bundle
was exported from exists ("pytorch-live"); otherwise the logits the exporter stored in the
bundle's golden set ("golden"). The latter is what a device does: this package imports only numpy
and edgecnn's numpy-only modules at the top, and torch only inside the live reference run.

Thresholds default per precision (``DEFAULT_THRESHOLDS``): fp32/fp16 must agree with the
reference on 99.5 % of samples; int8 may lose 1.0 point of top-1 and must agree on 97 %. When
the model's weights were random (``accuracy_meaningful`` false) the accuracy checks are skipped
and only agreement-like checks run.

Modules: `thresholds` (defaults, --threshold parsing), `settings` (VerifySettings), `samples` (golden
set, --data split), `evaluation` (running an artifact through its Runner, per-artifact metrics),
`reference` (PyTorch live vs golden), `results` (the report's dataclasses), `formats` (JUnit XML,
Markdown summary), `run` (the `verify` entry point).
"""

from edgecnn.verify.evaluation import evaluate_artifact, guess_precision
from edgecnn.verify.formats import append_summary, junit_xml, markdown_summary, write_junit
from edgecnn.verify.results import (
    REFERENCE_GOLDEN, REFERENCE_LIVE, SCHEMA, ArtifactResult, Check, VerifyFailedError, VerifyReport, format_metric,
)
from edgecnn.verify.run import verify
from edgecnn.verify.samples import data_mismatches
from edgecnn.verify.settings import VerifySettings
from edgecnn.thresholds import (
    DEFAULT_THRESHOLDS, ThresholdOverrides, Thresholds, build_overrides, parse_threshold_option,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "REFERENCE_GOLDEN",
    "REFERENCE_LIVE",
    "SCHEMA",
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
    "format_metric",
    "guess_precision",
    "junit_xml",
    "markdown_summary",
    "parse_threshold_option",
    "verify",
    "write_junit",
]
