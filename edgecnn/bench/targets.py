"""What to benchmark: the artifacts of a bundle or one file, the PyTorch reference, the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from edgecnn.backends import baseline_backend, resolve_runtime, runtime_for_path
from edgecnn.bench.settings import BenchTarget
from edgecnn.bundle import checkpoint_of
from edgecnn.errors import BadInputError


def reference_runtime() -> str:
    """The runtime of the eager reference run (the registry's baseline backend)."""
    return baseline_backend().name


def artifact_size_bytes(path: Path) -> int:
    """Bytes on disk of an artifact, with a weights file `<stem>.bin` beside it (OpenVINO IR, ncnn param)."""
    size = path.stat().st_size
    weights = path.with_suffix(".bin")
    if path.suffix.lower() != ".bin" and weights.is_file():
        size += weights.stat().st_size
    return size


def is_bundle_path(path: Path) -> bool:
    """A bundle folder or its manifest.json (anything else is one artifact file)."""
    return path.is_dir() or path.name == "manifest.json"


def targets_from_path(path: str | Path, runtime: str | None = None, *, untuned: bool = False):
    """(targets, bundle or None) for a bundle dir, its manifest.json, or one artifact file.

    Every bundle artifact is checked against the manifest's sha256 first (BundleIntegrityError,
    exit 2, on a mismatch or a missing file). A bundle's tuning file for this machine (sha256-checked
    too) sets each tuned artifact's threads and runner options, unless `untuned`.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"not found: {path}")
    wanted = resolve_runtime(runtime) if runtime else None
    if is_bundle_path(path):
        from edgecnn.bundle import load_bundle

        bundle = load_bundle(path)
        if wanted == reference_runtime():  # a bundle holds no eager artifact: its checkpoint is that run
            return [torch_reference_target(bundle)], bundle
        return apply_tuning(_bundle_targets(bundle, wanted), bundle, untuned=untuned), bundle
    if not path.is_file():
        raise BadInputError(f"not a file: {path}")
    chosen = wanted or runtime_for_path(path)
    return [BenchTarget(name=path.name, path=path, runtime=chosen, size_bytes=artifact_size_bytes(path))], None


def _bundle_targets(bundle, wanted: str | None) -> list[BenchTarget]:
    """One target per artifact of `bundle` (of runtime `wanted` when given), each integrity-checked."""
    entries = [e for e in bundle.artifacts if wanted is None or resolve_runtime(e.runtime) == wanted]
    if not entries:
        present = sorted({e.runtime for e in bundle.artifacts}) or ["none"]
        raise BadInputError(f"the bundle at {bundle.root} has no {wanted} artifact (it has: {', '.join(present)})")
    targets = []
    for entry in entries:
        bundle.check_integrity(entry)
        artifact = bundle.artifact_path(entry)
        size = sum(int(f.get("bytes", 0)) for f in (entry.files or [])) or int(entry.bytes or 0)
        input_spec = entry.input or {}
        options: dict[str, Any] = {"precision": entry.precision}
        if input_spec.get("shape"):
            options["input_shape"] = list(input_spec["shape"])
        if input_spec.get("layout"):
            options["layout"] = input_spec["layout"]
        targets.append(BenchTarget(
            name=str(entry.path), path=artifact, runtime=resolve_runtime(entry.runtime),
            precision=entry.precision, size_bytes=size or artifact_size_bytes(artifact), options=options,
        ))
    return targets


def apply_tuning(targets: list[BenchTarget], bundle, *, untuned: bool = False) -> list[BenchTarget]:
    """Each target with this machine's tuned threads and options, where the bundle's tuning file has them."""
    from edgecnn.bench.tuned import load_tuning

    tuning = load_tuning(bundle, untuned=untuned)
    if tuning is None:
        return targets
    entries = {str(e.path): e for e in bundle.artifacts}
    for target in targets:
        tuned = tuning.settings_for(entries[target.name]) if target.name in entries else None
        if tuned is not None:
            target.options = {**target.options, **tuned["options"]}
            target.threads = tuned["threads"]
            target.tuned_from = tuning.relative
    return targets


def torch_reference_target(bundle, targets: Iterable[BenchTarget] = ()) -> BenchTarget:
    """The PyTorch eager run of the bundle's checkpoint, as a baseline target."""
    if bundle is None:
        raise BadInputError(
            "the PyTorch baseline runs the checkpoint recorded in a bundle's manifest: bench the bundle, "
            "or bench the checkpoint file itself (edgecnn bench model.pt)"
        )
    checkpoint = checkpoint_of(bundle)
    if checkpoint is None:
        recorded = (bundle.manifest.get("model") or {}).get("checkpoint")
        why = f"{recorded} no longer exists" if recorded else "the manifest records none"
        raise BadInputError(
            f"the PyTorch baseline runs the checkpoint the bundle was exported from, and {why}: "
            "bench the checkpoint file itself (edgecnn bench model.pt) or drop --baseline torch"
        )
    shape = list(bundle.input_shape or []) or next(
        (t.options.get("input_shape") for t in targets if t.options.get("input_shape")), None)
    options = {"precision": "fp32", **({"input_shape": shape} if shape else {})}
    return BenchTarget(name=f"{checkpoint.name} (eager)", path=checkpoint, runtime=reference_runtime(),
                       precision="fp32", size_bytes=checkpoint.stat().st_size, options=options)


def is_torch_baseline(baseline: str | None) -> bool:
    """Whether `--baseline` asks for the PyTorch eager run ('torch', 'pytorch', 'eager')."""
    if not baseline:
        return False
    try:
        return resolve_runtime(baseline) == reference_runtime()
    except BadInputError:
        return False


def resolve_baseline(targets: list[BenchTarget], baseline: str | None) -> str | None:
    """The target name `--baseline` means: a name, or a runtime held by exactly one target."""
    if baseline is None:
        return None
    names = [t.name for t in targets]
    if baseline in names:
        return baseline
    try:
        runtime = resolve_runtime(baseline)
    except BadInputError:
        runtime = None
    matches = [t.name for t in targets if runtime is not None and t.runtime == runtime]
    if len(matches) == 1:
        return matches[0]
    raise BadInputError(
        f"--baseline {baseline!r} matches {'several' if matches else 'no'} artifact(s): "
        f"use one of {', '.join(names)}"
    )
