"""Reading a run folder: the model card, training metrics, bundle manifests, verify.json and bench.json.

A run folder (what `edgecnn quickstart` writes; `edgecnn report RUN_DIR` rebuilds from it alone):

    RUN_DIR/model_card.json              name, family, params, macs, input_size, num_classes, data
    RUN_DIR/model/metrics.json           training history (optional: no curve without it)
    RUN_DIR/bundles/<target>/manifest.json
    RUN_DIR/verify.json                  {"results": [one `edgecnn verify --json` payload per bundle]}
    RUN_DIR/bench.json                   {"results": [one `edgecnn bench --json` payload per bundle,
                                                      and one for the PyTorch eager baseline]}

Each bundle is paired with the verify and bench payloads that measured it. Runtimes are looked up
in the backend registry: the table order, which one is the eager baseline, which is built on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from edgecnn.atomic import read_json
from edgecnn.backends import Backend, get_backend
from edgecnn.errors import BadInputError

SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.html"
REQUIRED = ("model_card.json", "bundles/<target>/manifest.json", "verify.json", "bench.json")
PYTORCH_TARGET = "pytorch"  # the target quickstart gives the eager baseline's bench payload


def backend_of(runtime: str | None) -> Backend | None:
    """The registered backend of a runtime name; None for an empty or unknown one."""
    if not runtime:
        return None
    try:
        return get_backend(runtime)
    except BadInputError:
        return None


def is_baseline_runtime(runtime: str | None) -> bool:
    backend = backend_of(runtime)
    return backend is not None and not backend.deploy


@dataclass
class BundleInfo:
    """One bundle of the run, with the verify and bench payloads that belong to it."""

    target: str
    root: Path
    manifest: dict
    verify: dict | None = None
    bench: dict | None = None

    @property
    def device_runtime(self) -> str:
        """The runtime the target device runs (TensorRT for a Jetson), from the device profile."""
        profile = self.manifest.get("profile") or {}
        return str(profile.get("runtime") or "")

    @property
    def built_on_device(self) -> bool:
        backend = backend_of(self.device_runtime)
        return backend is not None and backend.built_on_device


@dataclass
class RunData:
    """Everything a run folder holds, parsed."""

    root: Path
    card: dict
    metrics: dict | None
    bundles: list[BundleInfo]
    verify_results: list[dict]
    bench_results: list[dict]
    notes: list[str] = field(default_factory=list)
    device_runs: list[dict] = field(default_factory=list)  # RUN_DIR/devices/*.json: bench/verify --on


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; BadInputError naming every missing or unreadable file."""
    root = Path(run_dir)
    if not root.is_dir():
        raise BadInputError(f"{root} is not a folder: pass the run folder `edgecnn quickstart` wrote")
    manifests = sorted((root / "bundles").glob("*/manifest.json"))
    missing = [name for name, present in (
        ("model_card.json", (root / "model_card.json").is_file()),
        ("bundles/<target>/manifest.json", bool(manifests)),
        ("verify.json", (root / "verify.json").is_file()),
        ("bench.json", (root / "bench.json").is_file()),
    ) if not present]
    if missing:
        raise BadInputError(f"{root} is not a complete quickstart run: missing {', '.join(missing)} "
                            "(make one with edgecnn quickstart --out DIR)")
    metrics_path = root / "model" / "metrics.json"
    bundles = []
    for manifest_path in manifests:
        manifest = _read_object(manifest_path)
        target = str(manifest.get("target") or manifest_path.parent.name)
        bundles.append(BundleInfo(target=target, root=manifest_path.parent, manifest=manifest))
    bundles.sort(key=_bundle_rank)
    run = RunData(root=root, card=_read_object(root / "model_card.json"),
                  metrics=_read_object(metrics_path) if metrics_path.is_file() else None, bundles=bundles,
                  verify_results=_results(root / "verify.json"), bench_results=_results(root / "bench.json"))
    from edgecnn.report.devices import DEVICES_FOLDER, load_device_runs

    run.device_runs = load_device_runs((root / DEVICES_FOLDER).glob("*.json"))
    for bundle in bundles:
        bundle.verify = _payload_for(bundle, run.verify_results)
        bundle.bench = _payload_for(bundle, [p for p in run.bench_results if not is_baseline_payload(p)])
    return run


def _read_object(path: Path) -> dict:
    return read_json(path, what="run file", hint="re-run edgecnn quickstart", expect=dict)


def _results(path: Path) -> list[dict]:
    results = _read_object(path).get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise BadInputError(f"{path}: 'results' must be a list of objects")
    return results


def _bundle_rank(bundle: BundleInfo) -> tuple:
    """Table order: by the device runtime's registry order, its host target first, then by name."""
    backend = backend_of(bundle.device_runtime)
    if backend is None:
        return (float("inf"), True, bundle.target)
    return (backend.order, bundle.target != backend.host_target, bundle.target)


def _payload_target(payload: dict) -> str | None:
    """The target a verify or bench payload belongs to: its `target`, else its bundle's."""
    bundle = payload.get("bundle")
    if payload.get("target"):
        return str(payload["target"])
    if isinstance(bundle, dict) and bundle.get("target"):
        return str(bundle["target"])
    return None


def _payload_root(payload: dict) -> str | None:
    bundle = payload.get("bundle")
    if isinstance(bundle, dict):
        bundle = bundle.get("root")
    return str(bundle) if bundle else (str(payload["path"]) if payload.get("path") else None)


def _payload_for(bundle: BundleInfo, payloads: Iterable[dict]) -> dict | None:
    """The payload that measured this bundle: same folder, else same folder name, else same target."""
    payloads = list(payloads)
    try:
        resolved = bundle.root.resolve()
    except OSError:
        resolved = bundle.root
    for payload in payloads:
        root = _payload_root(payload)
        if root and Path(root).expanduser().resolve() in (resolved, resolved / "manifest.json"):
            return payload
    # The run folder may have been moved (a CI artifact): fall back on names.
    for payload in payloads:
        root = _payload_root(payload)
        if root and Path(root).name == bundle.root.name:
            return payload
    for payload in payloads:
        if _payload_target(payload) in (bundle.target, bundle.root.name):
            return payload
    return None


def is_baseline_payload(payload: dict) -> bool:
    """A bench payload of the eager baseline (by its target, or all its rows run the baseline runtime)."""
    artifacts = [a for a in payload.get("artifacts") or [] if isinstance(a, dict)]
    if _payload_target(payload) == PYTORCH_TARGET:
        return True
    return bool(artifacts) and all(is_baseline_runtime(a.get("runtime")) for a in artifacts)


def batch_one(artifacts: Iterable[dict]) -> list[dict]:
    """The batch-1 rows (or, when a payload has no batch 1, its smallest batch)."""
    artifacts = [a for a in artifacts if isinstance(a, dict) and isinstance(a.get("latency_ms"), dict)]
    if not artifacts:
        return []
    smallest = min(int(a.get("batch") or 1) for a in artifacts)
    return [a for a in artifacts if int(a.get("batch") or 1) == smallest]


def baseline_measurement(run: RunData) -> tuple[dict | None, dict | None]:
    """(bench row, payload) of the eager baseline: a dedicated payload first."""
    ordered = sorted(run.bench_results, key=lambda p: not is_baseline_payload(p))
    for payload in ordered:
        for row in batch_one(payload.get("artifacts") or []):
            if is_baseline_runtime(row.get("runtime")):
                return row, payload
    return None, None


def match_artifact(entry: dict, artifacts: Iterable[dict]) -> dict | None:
    """The payload row for a manifest entry: by bundle-relative path, else runtime + precision."""
    artifacts = [a for a in artifacts if isinstance(a, dict)]
    path = str(entry.get("path", ""))
    for artifact in artifacts:
        if artifact.get("name") == path or str(artifact.get("path", "")).endswith("/" + path):
            return artifact
    same = [a for a in artifacts if a.get("runtime") == entry.get("runtime")
            and a.get("precision") == entry.get("precision")]
    return same[0] if len(same) == 1 else None


def error_text(payload: dict | None) -> str | None:
    """The error a failed command left in its payload, if any."""
    if not payload or "error" not in payload:
        return None
    error = payload["error"]
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "error")
    return str(error)


def rounded(value: Any, digits: int) -> float | None:
    """A JSON number rounded for the summary; None for anything that is not one."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return round(float(value), digits)
