"""`tune` on a bundle: every artifact searched under one budget, the result stored as tuning/<signature>.json."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import edgecnn
from edgecnn.backends import get_backend
from edgecnn.bench import targets_from_path
from edgecnn.bench.environment import loadavg
from edgecnn.bench.tuned import (
    SCHEMA, backend_tuning, device_description, device_signature, precision_label, store_tuning, tuning_relative,
)
from edgecnn.bundle import default_threads_for, load_bundle
from edgecnn.errors import BadInputError
from edgecnn.host import physical_cores
from edgecnn.tune.candidate import Gate
from edgecnn.tune.search import ArtifactTuning, OnCandidate, plan, planned_count, search
from edgecnn.tune.settings import TuneSettings
from edgecnn.verify.samples import golden_labels_meaningful, golden_samples


def tune(path: str | Path, settings: TuneSettings | None = None, *, on_candidate: OnCandidate | None = None,
         on_plan=None) -> dict[str, Any]:
    """Tune every artifact of a bundle (of `settings.runtime`) and store tuning/<signature>.json; the report."""
    settings = settings or TuneSettings()
    path = Path(path)
    if not (path.is_dir() or path.name == "manifest.json"):
        raise BadInputError(f"edgecnn tune takes a bundle folder (or its manifest.json), not {path}")
    bundle = load_bundle(path)
    description = device_description()
    signature = device_signature(description)
    relative = tuning_relative(signature)
    if (bundle.root / relative).exists() and not settings.force:
        raise BadInputError(f"{bundle.root / relative} already exists: pass --force to tune again")
    targets, _ = targets_from_path(path, settings.runtime, untuned=True)  # hashes checked; no tuning applied
    gate = _gate(bundle, settings)
    threads, cores = default_threads_for(bundle), physical_cores()
    if on_plan:
        on_plan(sum(planned_count(plan(t, default_threads=threads, cores=cores)[1]) for t in targets))
    started, load_before = time.monotonic(), loadavg()
    results: list[ArtifactTuning] = []
    skipped: list[dict[str, str]] = []
    for index, target in enumerate(targets):
        remaining = settings.budget_s - (time.monotonic() - started)
        spent = [c.seconds for r in results for c in r.candidates]
        if results and remaining < sum(spent) / len(spent):  # not even its defaults would fit
            skipped.append({"name": target.name, "reason": "the budget was spent before this artifact"})
            continue
        # Each artifact may use its share of what is left (an early finish leaves more to the rest).
        deadline = time.monotonic() + max(0.0, remaining) / (len(targets) - index)
        gate.batch = 1 if get_backend(target.runtime).static_batch else settings.verify_batch
        results.append(search(target, gate, settings, deadline=deadline, default_threads=threads, cores=cores,
                              on_candidate=on_candidate))
    payload = _payload(bundle, results, skipped, settings, signature=signature, description=description)
    payload["gate_samples"] = int(gate.samples.inputs.shape[0])
    payload["seconds"] = round(time.monotonic() - started, 1)
    payload["loadavg_before"], payload["loadavg_after"] = load_before, loadavg()
    kept = _kept(bundle, signature, {r["path"] for r in payload["artifacts"]})
    stored = store_tuning(bundle, {**payload, "artifacts": payload["artifacts"] + kept}, force=settings.force)
    payload["kept_from_before"] = [row["path"] for row in kept]
    payload["tuning_file"] = str(stored)
    return payload


def _kept(bundle, signature: str, tuned_now: set[str]) -> list[dict[str, Any]]:
    """Rows of this machine's previous tuning for artifacts not tuned this time (`--runtime`), still unchanged."""
    from edgecnn.bench.tuned import load_tuning
    from edgecnn.bundle import BundleIntegrityError

    try:
        previous = load_tuning(bundle, signature=signature)
    except BundleIntegrityError:  # a changed file is being replaced (--force): nothing of it is kept
        return []
    if previous is None:
        return []
    current = {str(e.path): e.sha256 for e in bundle.artifacts}
    return [row for row in previous.payload.get("artifacts", [])
            if row.get("path") not in tuned_now and current.get(row.get("path")) == row.get("sha256")]


def _gate(bundle, settings: TuneSettings) -> Gate:
    if bundle.golden_path is None:
        raise BadInputError(f"the bundle at {bundle.root} has no golden set: tune gates every candidate on it "
                            "(re-export the bundle with edgecnn export)")
    samples = golden_samples(bundle.load_golden(), settings.limit, labels_meaningful=golden_labels_meaningful(bundle))
    accuracy_meaningful = bool((bundle.manifest.get("model") or {}).get("accuracy_meaningful", True))
    return Gate(samples=samples, accuracy_meaningful=accuracy_meaningful, batch=settings.verify_batch)


def _payload(bundle, results: list[ArtifactTuning], skipped, settings: TuneSettings, *, signature: str,
             description: dict[str, Any]) -> dict[str, Any]:
    versions = {r.target.runtime: _runtime_version(r) for r in results}
    return {
        "schema": SCHEMA, "signature": signature, "device": description,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "edgecnn": edgecnn.__version__,
        "bundle": str(bundle.root), "model": bundle.model_name, "target": bundle.target,
        "runtime_versions": versions, "method": settings.as_dict(),
        "stopped_by_budget": any(r.stopped_by_budget for r in results) or bool(skipped),
        "artifacts": [_artifact_row(bundle, r) for r in results], "skipped": skipped,
    }


def _runtime_version(result: ArtifactTuning) -> str | None:
    return next((str(c.runtime_version) for c in result.candidates if c.runtime_version), None)


def _artifact_row(bundle, result: ArtifactTuning) -> dict[str, Any]:
    """What the file stores and the table shows for one artifact."""
    target, chosen = result.target, result.chosen
    entry = next(e for e in bundle.artifacts if str(e.path) == target.name)
    module = backend_tuning(target.runtime)
    compute = chosen.compute_precision if chosen else None
    speedup = (result.default_p50 / result.tuned_p50) if result.default_p50 and result.tuned_p50 else None
    return {
        "path": target.name, "sha256": entry.sha256, "runtime": target.runtime, "precision": target.precision,
        "capabilities": module.capabilities() if module else {},
        "settings": chosen.settings if chosen else None,
        "compute_precision": compute, "precision_label": precision_label(target.runtime, target.precision, compute),
        "default_settings": result.default.settings if result.default else None,
        "default_p50": result.default_p50, "tuned_p50": result.tuned_p50, "speedup": speedup,
        "agreement": chosen.agreement if chosen else None,
        "default_agreement": result.default.agreement if result.default else None,
        "stopped_by_budget": result.stopped_by_budget, "note": result.note, "confirm": result.confirm,
        "reason": None if chosen else "no candidate passed the accuracy gate: nothing stored for this artifact",
        "candidates": [c.to_dict() for c in result.candidates],
    }


__all__ = ["tune"]
