"""Tuned runtime settings stored in a bundle: `tuning/<device signature>.json`, found, checked and applied.

`edgecnn tune` writes one file per device (CPU model and flags, cores, machine) and records its sha256
in the manifest's `tuning` list, so a changed file is refused like a changed artifact. `bench`,
`verify` and `load_bundle_runner` use the file whose signature is this machine's, and only for the
artifacts whose sha256 it was tuned on; any other machine ignores it. `untuned=True` ignores it too.

Numpy-only at the top, like the rest of `bench`: a device reads tuning files without torch or an SDK.
"""

from __future__ import annotations

import hashlib
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.atomic import write_json_atomic
from edgecnn.bundle import MANIFEST_NAME, BundleIntegrityError, file_sha256
from edgecnn.errors import BadInputError
from edgecnn.host import physical_cores
from edgecnn.validate import inside, integer, number

TUNING_DIR = "tuning"
SCHEMA = "edgecnn.tuning/1"


def cpu_flags() -> list[str]:
    """The CPU's feature flags (x86 `flags`, ARM `Features`), sorted; empty where /proc/cpuinfo is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and value.strip():
            return sorted(set(value.split()))
    return []


def device_description() -> dict[str, Any]:
    """What the signature is made of: CPU model and flags, physical cores, machine."""
    from edgecnn.bench.environment import cpu_model

    return {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "physical_cores": physical_cores(),
            "machine": platform.machine()}


def device_signature(description: dict[str, Any] | None = None) -> str:
    """A file-name-safe id of this machine: readable CPU model, cores, and a hash of everything."""
    description = description or device_description()
    digest = hashlib.sha256(repr(sorted(description.items())).encode()).hexdigest()[:10]
    model = re.sub(r"[^a-z0-9]+", "-", str(description["cpu_model"]).lower()).strip("-")[:40] or "cpu"
    return f"{description['machine']}-{model}-{description['physical_cores']}c-{digest}"


def backend_tuning(runtime: str):
    """The backend's tuning module (its knobs, its compute precision), or None when it publishes none."""
    from edgecnn.backends import get_backend

    return get_backend(runtime).tuning_module()


def compute_precision(runtime: str, precision: str | None, applied: dict[str, Any]) -> str | None:
    """The precision the runtime really computed in, from what its runner reported after loading."""
    module = backend_tuning(runtime)
    if precision is None or module is None:
        return precision
    return module.compute_precision(precision, applied or {})


def precision_label(runtime: str, precision: str | None, compute: str | None) -> str:
    """'fp32' or, when the runtime computes in another precision, 'fp32 IR, bf16 compute'."""
    if not precision or not compute or compute == precision:
        return precision or ""
    module = backend_tuning(runtime)
    noun = getattr(module, "ARTIFACT_NOUN", "model")
    return f"{precision} {noun}, {compute} compute"


@dataclass
class StoredTuning:
    """This machine's tuning file of a bundle, hash-checked: per artifact path, the settings chosen."""

    relative: str  # tuning/<signature>.json, relative to the bundle root
    payload: dict[str, Any]
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings_for(self, entry) -> dict[str, Any] | None:
        """{threads, options} tuned for a manifest artifact, None when it was not tuned (or has changed since)."""
        found = self.chosen.get(str(entry.path))
        if not found or found.get("sha256") != entry.sha256:
            return None
        settings = dict(found.get("settings") or {})
        threads = settings.pop("threads", None)
        return {"threads": threads, "options": settings}


def tuning_records(bundle) -> list[dict[str, Any]]:
    records = bundle.manifest.get("tuning") or []
    if not isinstance(records, list):
        raise BadInputError(f"{bundle.root / MANIFEST_NAME}: 'tuning' must be a list: re-run edgecnn tune")
    return [r for r in records if isinstance(r, dict)]


def load_tuning(bundle, *, untuned: bool = False, signature: str | None = None) -> StoredTuning | None:
    """This machine's tuning of `bundle` (sha256-checked), None when there is none or `untuned`."""
    if untuned:
        return None
    signature = signature or device_signature()
    record = next((r for r in tuning_records(bundle) if r.get("signature") == signature), None)
    if record is None:
        return None
    relative = record.get("path")
    path = inside(bundle.root, relative, f"{Path(bundle.root) / MANIFEST_NAME}: the tuning record's path")
    if not path.is_file():
        raise BundleIntegrityError(f"{path} is listed in the manifest but missing: re-run edgecnn tune "
                                   "(or pass --untuned)")
    actual = file_sha256(path)
    if actual != record.get("sha256"):
        raise BundleIntegrityError(
            f"{path} does not match the manifest (sha256 {actual[:12]}... != {str(record.get('sha256'))[:12]}...): "
            "the tuning file changed after edgecnn tune; re-run edgecnn tune --force, or pass --untuned")
    from edgecnn.atomic import read_json

    payload = read_json(path, what="tuning file", hint=_RETUNE, expect=dict)
    artifacts = payload.get("artifacts") or []
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts):
        raise BadInputError(f"{path}: 'artifacts' must be a list of objects: {_RETUNE}")
    chosen = {str(a.get("path")): a for a in artifacts if a.get("settings") is not None}
    for name, row in chosen.items():
        check_tuned_settings(row["settings"], f"{path}: {name}")
    return StoredTuning(relative=relative, payload=payload, chosen=chosen)


_RETUNE = "re-run edgecnn tune --force, or pass --untuned"


def check_tuned_settings(settings: Any, where: str) -> None:
    """Refuse a tuned setting no runner could take, by name: thread counts are whole numbers >= 1; other knobs
    are a word, a flag, a finite number or a list of words (providers)."""
    if not isinstance(settings, dict):
        raise BadInputError(f"{where}: 'settings' must be an object: {_RETUNE}")
    for key, value in settings.items():
        name = f"{where}: tuned setting {key}"
        if not isinstance(key, str) or not key.isidentifier():
            raise BadInputError(f"{where}: tuned setting {key!r} is not a setting name: {_RETUNE}")
        try:
            if value is None:  # the runner's default
                continue
            if key == "threads" or key.endswith("_threads"):
                integer(value, name, minimum=1)
            elif isinstance(value, list):
                if not all(isinstance(item, str) for item in value):
                    raise BadInputError(f"{name} must be a list of names, got {value!r}")
            elif not isinstance(value, (str, bool)):
                number(value, name)
        except BadInputError as exc:
            raise BadInputError(f"{exc}: {_RETUNE}") from None


def tuning_relative(signature: str) -> str:
    return f"{TUNING_DIR}/{signature}.json"


def store_tuning(bundle, payload: dict[str, Any], *, force: bool = False) -> Path:
    """Write tuning/<signature>.json and record its sha256 in the manifest (both atomically); artifacts untouched."""
    signature = payload["signature"]
    relative = tuning_relative(signature)
    path = Path(bundle.root) / relative
    records = tuning_records(bundle)
    if (path.exists() or any(r.get("signature") == signature for r in records)) and not force:
        raise BadInputError(f"{path} already exists: pass --force to tune again")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, payload)
    record = {"path": relative, "signature": signature, "sha256": file_sha256(path), "bytes": path.stat().st_size,
              "cpu_model": payload.get("device", {}).get("cpu_model"), "created": payload.get("created")}
    manifest = dict(bundle.manifest)
    manifest["tuning"] = [r for r in records if r.get("signature") != signature] + [record]
    write_json_atomic(Path(bundle.root) / MANIFEST_NAME, manifest)
    bundle.manifest = manifest
    return path


def load_bundle_runner(bundle_path: str | Path, artifact: str | None = None, *, batch: int = 1,
                       untuned: bool = False):
    """A loaded Runner for one artifact of a bundle (the first when not named), with this machine's tuning.

    The device-side way to run a bundle in an application: hashes checked, the manifest's input and
    precision passed, tuned threads and options applied when tuning/<this signature>.json has them.
    """
    from edgecnn.backends import get_runner
    from edgecnn.bundle import default_threads_for, load_bundle

    bundle = load_bundle(bundle_path)
    entries = [e for e in bundle.artifacts if artifact is None or e.path == artifact]
    if not entries:
        raise BadInputError(f"the bundle at {bundle.root} has no artifact {artifact!r} "
                            f"(it has: {', '.join(e.path for e in bundle.artifacts)})")
    entry = entries[0]
    bundle.check_integrity(entry)
    tuning = load_tuning(bundle, untuned=untuned)
    tuned = tuning.settings_for(entry) if tuning else None
    options: dict[str, Any] = {"precision": entry.precision}
    if (entry.input or {}).get("shape"):
        options["input_shape"] = list(entry.input["shape"])
    options.update((tuned or {}).get("options") or {})
    threads = (tuned or {}).get("threads") or default_threads_for(bundle)
    runner = get_runner(entry.runtime)
    runner.load(bundle.artifact_path(entry), threads=threads, batch=batch, **options)
    runner.tuned_from = tuning.relative if tuned else None
    return runner


__all__ = ["SCHEMA", "TUNING_DIR", "StoredTuning", "backend_tuning", "compute_precision", "cpu_flags",
           "device_description", "device_signature", "load_bundle_runner", "load_tuning", "precision_label",
           "store_tuning", "tuning_records", "tuning_relative"]
