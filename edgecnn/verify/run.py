"""The entry point: what to verify (a bundle, or one artifact file and its --reference), then run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInputError
from edgecnn.verify.evaluation import Target, guess_precision, run_targets
from edgecnn.verify.reference import (
    checkpoint_metadata, cross_check_live, is_reference_runtime, live_unavailable, reference_checkpoint,
    resolve_reference, torch_available,
)
from edgecnn.verify.results import VerifyReport
from edgecnn.verify.samples import (
    Samples, class_count_of, golden_labels_meaningful, golden_logits_for, golden_samples, load_data_samples,
    manifest_seed, read_golden_file,
)
from edgecnn.verify.settings import Progress, VerifySettings, is_bundle_path


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


# ------------------------------------------------------------------------------------ a bundle


def _verify_bundle(path: Path, settings: VerifySettings, progress: Progress | None) -> VerifyReport:
    from edgecnn.bundle import checkpoint_of, default_threads_for, load_bundle, replay_of

    bundle = load_bundle(path)
    entries = _bundle_entries(bundle, settings)
    threads = settings.threads or default_threads_for(bundle)
    accuracy_meaningful = bool((bundle.manifest.get("model") or {}).get("accuracy_meaningful", True))
    checkpoint = reference_checkpoint(settings.reference) or checkpoint_of(bundle)
    # No checkpoint: a foreign source re-runs from what the manifest recorded (model.replay).
    live_source = settings.reference_model or checkpoint or (None if settings.reference else replay_of(bundle))
    input_shape = bundle.input_shape or (bundle.preprocess.input_shape if bundle.preprocess else None)
    samples = _bundle_samples(bundle, settings, live_source=live_source, threads=threads, input_shape=input_shape)
    unavailable = live_unavailable(live_source)
    if settings.reference_source == "pytorch" and unavailable:
        raise BadInputError(
            "--reference-source pytorch needs the model the bundle was exported from, re-run here "
            f"({unavailable}): pass --reference CHECKPOINT"
        )
    resolve_reference(samples, live_source, threads=threads, batch=settings.batch, input_shape=input_shape,
                      live=settings.reference_source != "golden", progress=progress,
                      required=settings.reference_source == "pytorch")
    targets = _tuned(bundle, [_bundle_target(bundle, entry, input_shape) for entry in entries], settings)
    report = run_targets(targets, samples, settings, threads=threads, accuracy_meaningful=accuracy_meaningful,
                         progress=progress)
    report.model = bundle.model_name
    report.target = bundle.target
    report.bundle = str(bundle.root)
    report.checkpoint = str(checkpoint) if checkpoint else None
    return report


def _bundle_entries(bundle, settings: VerifySettings) -> list:
    """The artifacts to verify (those of --runtime), every hash checked before anything runs."""
    from edgecnn.backends import resolve_runtime

    wanted = resolve_runtime(settings.runtime) if settings.runtime else None
    entries = [e for e in bundle.artifacts if wanted is None or resolve_runtime(e.runtime) == wanted]
    if not entries:
        present = sorted({e.runtime for e in bundle.artifacts}) or ["none"]
        what = f"{wanted} artifact" if wanted else "artifacts"
        raise BadInputError(f"the bundle at {bundle.root} has no {what} (it has: {', '.join(present)})")
    # Every hash first: a tampered bundle is refused before anything runs.
    for entry in entries:
        bundle.check_integrity(entry)
    return entries


def _bundle_samples(bundle, settings: VerifySettings, *, live_source, threads: int, input_shape) -> Samples:
    """The golden set, or --data's test split (after checking the live reference is still the exported model)."""
    golden = bundle.load_golden() if bundle.golden_path is not None else None
    if not settings.data:
        if golden is None:
            raise BadInputError(
                f"the bundle at {bundle.root} has no golden set: pass --data SPEC to verify on a data set"
            )
        return _with_golden_reference(
            golden_samples(golden, settings.limit, labels_meaningful=golden_labels_meaningful(bundle)), bundle)
    if settings.reference_source == "golden":
        raise BadInputError("--reference-source golden verifies on the golden set: drop --data")
    model = bundle.manifest.get("model") or {}
    seed = settings.seed if settings.seed is not None else manifest_seed(bundle.manifest)
    samples = load_data_samples(settings.data, bundle.preprocess, num_classes=class_count_of(bundle, golden),
                                data_root=settings.data_root or model.get("data_root"), seed=seed,
                                limit=settings.limit)
    if golden is not None:
        # Photos of the golden set: its logits are a reference where no PyTorch run is possible.
        samples.golden_logits = golden_logits_for(samples.inputs, golden)
    if live_source is not None and live_unavailable(live_source) is None and golden is not None:
        cross_check_live(live_source, golden, threads=threads, input_shape=input_shape)
    return _with_golden_reference(samples, bundle)


def _with_golden_reference(samples: Samples, bundle) -> Samples:
    """What the bundle's golden logits were computed with (PyTorch fp32, or an ONNX source's own file)."""
    recorded = (bundle.manifest.get("golden") or {}).get("reference")
    if isinstance(recorded, str) and recorded:
        samples.golden_reference = recorded
    return samples


def _bundle_target(bundle, entry, input_shape) -> Target:
    """How to run one manifest artifact: its file, runtime, precision, input shape, layout and fixed batch."""
    from edgecnn.backends import resolve_runtime

    recorded = entry.input or {}
    shape = recorded.get("shape") or (list(input_shape) if input_shape else None)
    options: dict[str, Any] = {"precision": entry.precision}
    if shape:
        options["input_shape"] = list(shape)
    if recorded.get("layout"):
        options["layout"] = recorded["layout"]
    fixed = recorded.get("batch")
    if (entry.extra or {}).get("emulate_without_vnni") is True:
        from edgecnn.host import int8_accumulates_exactly

        if not int8_accumulates_exactly():  # this host's int8 kernels saturate: check the device's arithmetic
            # bundles from before emulation_options was recorded are ONNX Q/DQ files
            options.update((entry.extra or {}).get("emulation_options") or {"graph_optimization": "disable"})
    return Target(
        name=entry.path, path=bundle.artifact_path(entry), format=entry.format,
        runtime=resolve_runtime(entry.runtime), precision=entry.precision.lower(), options=options,
        batch=int(fixed) if isinstance(fixed, int) and not isinstance(fixed, bool) and fixed > 0 else None,
        layers_in_float=int((entry.extra or {}).get("layers_in_float") or 0),
    )


def _tuned(bundle, targets: list[Target], settings: VerifySettings) -> list[Target]:
    """The targets with this machine's tuned options (and threads, unless --threads), from tuning/<signature>.json."""
    from edgecnn.bench.tuned import load_tuning

    tuning = load_tuning(bundle, untuned=settings.untuned)
    entries = {str(e.path): e for e in bundle.artifacts}
    for target in targets if tuning is not None else []:
        tuned = tuning.settings_for(entries[target.name])
        if tuned is not None:
            target.options = {**target.options, **tuned["options"]}
            target.threads = None if settings.threads else tuned["threads"]
            target.tuned_from = tuning.relative
    return targets


# ------------------------------------------------------------------------------- one artifact


@dataclass
class _Reference:
    """What --reference gives a single artifact: samples, and the model they come from."""

    samples: Samples
    model_name: str
    checkpoint: Path | None = None
    preprocess: Any = None
    accuracy_meaningful: bool = True


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
    if is_reference_runtime(runtime):
        raise BadInputError(f"{path.name} is a PyTorch checkpoint, the reference itself: verify an exported artifact")
    precision = (settings.precision or guess_precision(path)).lower()
    threads = settings.threads or default_threads()
    ref = _file_reference(Path(settings.reference).expanduser(), settings, model_name=path.stem)
    samples = ref.samples
    if settings.reference_source == "pytorch" and (ref.checkpoint is None or not torch_available()):
        raise BadInputError("--reference-source pytorch needs torch and a checkpoint (--reference CHECKPOINT)")
    input_shape = ref.preprocess.input_shape if ref.preprocess is not None else tuple(samples.inputs.shape[1:])
    resolve_reference(samples, ref.checkpoint, threads=threads, batch=settings.batch, input_shape=input_shape,
                      live=settings.reference_source != "golden", progress=progress,
                      required=settings.reference_source == "pytorch")
    options = {"precision": precision, "input_shape": list(input_shape)}
    target = Target(name=path.name, path=path, format=path.suffix.lstrip(".").lower(), runtime=runtime,
                    precision=precision, options=options)
    report = run_targets([target], samples, settings, threads=threads, accuracy_meaningful=ref.accuracy_meaningful,
                         progress=progress)
    report.model = ref.model_name
    report.checkpoint = str(ref.checkpoint) if ref.checkpoint else None
    if settings.precision is None:
        report.notes.append(f"precision {precision} (from the file name; pass --precision to say otherwise)")
    return report


def _file_reference(reference: Path, settings: VerifySettings, *, model_name: str) -> _Reference:
    """--reference as a bundle, a bare golden .npz or a checkpoint."""
    if not reference.exists():
        raise BadInputError(f"--reference {reference}: not found")
    if is_bundle_path(reference):
        return _bundle_reference(reference, settings)
    if reference.suffix == ".npz":
        golden = read_golden_file(reference)
        if settings.data:
            raise BadInputError("--data needs a checkpoint or bundle as --reference, not a bare golden .npz")
        return _Reference(samples=golden_samples(golden, settings.limit), model_name=model_name)
    checkpoint, meta = checkpoint_metadata(reference)
    data = settings.data or meta.get("data")
    if not data:
        raise BadInputError(f"{reference} records no data SPEC: pass --data SPEC")
    seed = settings.seed if settings.seed is not None else int(meta.get("seed") or 0)
    samples = load_data_samples(data, meta["preprocess_spec"], num_classes=int(meta["num_classes"]),
                                data_root=settings.data_root or meta.get("data_root"), seed=seed,
                                limit=settings.limit)
    return _Reference(samples=samples, model_name=str(meta.get("arch", model_name)), checkpoint=checkpoint,
                      preprocess=meta["preprocess_spec"])


def _bundle_reference(reference: Path, settings: VerifySettings) -> _Reference:
    """A bundle as --reference: its golden set (or --data matched to its model), its checkpoint if still here."""
    from edgecnn.bundle import checkpoint_of, load_bundle

    bundle = load_bundle(reference)
    golden = bundle.load_golden()
    if settings.data:
        seed = settings.seed if settings.seed is not None else manifest_seed(bundle.manifest)
        samples = load_data_samples(settings.data, bundle.preprocess, num_classes=class_count_of(bundle, golden),
                                    data_root=settings.data_root, seed=seed, limit=settings.limit)
    else:
        samples = golden_samples(golden, settings.limit, labels_meaningful=golden_labels_meaningful(bundle))
    return _Reference(
        samples=samples, model_name=bundle.model_name, checkpoint=checkpoint_of(bundle), preprocess=bundle.preprocess,
        accuracy_meaningful=bool((bundle.manifest.get("model") or {}).get("accuracy_meaningful", True)),
    )


__all__ = ["verify"]
