"""The deploy bundle: a folder of artifacts, a golden set and `manifest.json` that describes them.

A bundle is what `export` writes and what `bench`, `verify` and `build` read, on the host or on
the device. This module is numpy-only (no torch), because devices read bundles.

Layout:

    DIR/manifest.json      model, target, device profile, input + preprocessing, artifacts
                           (path, format, runtime, precision, sha256, bytes, files), tool versions
    DIR/golden.npz         held-out samples: inputs (preprocessed NCHW float32), labels,
                           logits (the PyTorch fp32 reference), so a device can check artifacts
    DIR/<format>/...       the artifacts themselves

Every artifact file's sha256 is recorded, and `check_integrity` refuses a file that changed:
a device must never benchmark or verify something other than what was exported.
"""

from __future__ import annotations

import hashlib
import json
import glob
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgecnn.atomic import claim_output, process_alive, release_claim, write_json_atomic
from edgecnn.errors import BadInputError

MANIFEST_NAME = "manifest.json"
GOLDEN_NAME = "golden.npz"
BUNDLE_FORMAT = "edgecnn.bundle"
BUNDLE_FORMAT_VERSION = 1
GOLDEN_KEYS = ("inputs", "labels", "logits")


class BundleIntegrityError(BadInputError):
    """An artifact or golden file is missing or its sha256 differs from the manifest (exit 2)."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (IRs and engines can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ArtifactEntry:
    """One artifact of a bundle, as the manifest records it."""

    path: str  # main file, relative to the bundle root (POSIX separators)
    format: str  # onnx | openvino | tflite | tensorrt
    runtime: str  # onnxruntime | openvino | tflite | tensorrt
    precision: str  # fp32 | fp16 | int8
    sha256: str
    bytes: int
    files: list[dict] = field(default_factory=list)  # every file: {path, sha256, bytes}
    input: dict = field(default_factory=dict)  # {shape [C,H,W], layout, dtype, batch}
    extra: dict = field(default_factory=dict)  # everything else the manifest says (parity, ...)

    @classmethod
    def from_dict(cls, payload: Any, index: int) -> "ArtifactEntry":
        if not isinstance(payload, dict):
            raise BadInputError(f"manifest: artifacts[{index}] must be an object")
        missing = [k for k in ("path", "format", "runtime", "precision", "sha256") if not payload.get(k)]
        if missing:
            raise BadInputError(f"manifest: artifacts[{index}] lacks {', '.join(missing)}")
        known = {"path", "format", "runtime", "precision", "sha256", "bytes", "files", "input"}
        return cls(
            path=str(payload["path"]),
            format=str(payload["format"]),
            runtime=str(payload["runtime"]),
            precision=str(payload["precision"]),
            sha256=str(payload["sha256"]),
            bytes=int(payload.get("bytes") or 0),
            files=list(payload.get("files") or []),
            input=dict(payload.get("input") or {}),
            extra={k: v for k, v in payload.items() if k not in known},
        )

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "runtime": self.runtime,
            "precision": self.precision,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "files": self.files,
            "input": self.input,
            **self.extra,
        }

    @property
    def label(self) -> str:
        """Short name for tables: 'openvino int8'."""
        return f"{self.format} {self.precision}"

    @property
    def total_bytes(self) -> int:
        return sum(int(f.get("bytes", 0)) for f in self.files) or self.bytes


@dataclass
class Bundle:
    """A loaded bundle: its root folder, manifest and artifact entries."""

    root: Path
    manifest: dict
    artifacts: list[ArtifactEntry]

    @property
    def target(self) -> str | None:
        return self.manifest.get("target")

    @property
    def profile(self) -> dict:
        """The device profile the bundle was exported for (threads, runtime, ...)."""
        return self.manifest.get("profile") or self.manifest.get("device") or {}

    @property
    def model_name(self) -> str:
        model = self.manifest.get("model") or {}
        return str(model.get("name", "model"))

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        shape = (self.manifest.get("input") or {}).get("shape")
        return tuple(int(v) for v in shape) if shape else None

    @property
    def class_names(self) -> list[str]:
        return list((self.manifest.get("preprocess") or {}).get("class_names") or [])

    @property
    def preprocess(self):
        """The PreprocessSpec the artifacts expect (None for a bundle that records none)."""
        from edgecnn.preprocess import PreprocessSpec

        payload = self.manifest.get("preprocess")
        return PreprocessSpec.from_dict(payload) if payload else None

    @property
    def golden_path(self) -> Path | None:
        golden = self.manifest.get("golden")
        if not golden:
            return None
        return self.root / (golden.get("path") if isinstance(golden, dict) else str(golden))

    def artifact_path(self, entry: ArtifactEntry) -> Path:
        return self.root / entry.path

    def check_integrity(self, entry: ArtifactEntry | None = None) -> None:
        """Refuse a missing or changed file (BundleIntegrityError); all artifacts when entry is None."""
        for item in [entry] if entry is not None else self.artifacts:
            # The entry's own sha256 and every file record must match: a tampered manifest may
            # change either one.
            checked: set[tuple[str, str]] = set()
            for record in [{"path": item.path, "sha256": item.sha256}, *item.files]:
                key = (record.get("path", ""), record.get("sha256", ""))
                if key not in checked:  # the main file is usually listed twice: hash it once
                    checked.add(key)
                    self._check_file(*key)

    def _check_file(self, relative: str, expected: str) -> None:
        path = self.root / relative
        if not path.is_file():
            raise BundleIntegrityError(f"{path} is listed in the manifest but missing: re-export the bundle")
        actual = file_sha256(path)
        if actual != expected:
            raise BundleIntegrityError(
                f"{path} does not match the manifest (sha256 {actual[:12]}... != {str(expected)[:12]}...): "
                "the file changed after export; re-export the bundle (edgecnn export ... --force)"
            )

    def load_golden(self) -> dict[str, np.ndarray]:
        """The golden set, hash-checked: inputs (N,C,H,W float32), labels (N,), logits (N,K)."""
        golden = self.manifest.get("golden")
        if not golden:
            raise BadInputError(
                f"the bundle at {self.root} has no golden set: pass --data SPEC to verify on a data set"
            )
        path = self.golden_path
        if isinstance(golden, dict) and golden.get("sha256"):
            self._check_file(golden.get("path", GOLDEN_NAME), golden["sha256"])
        elif path is None or not path.is_file():
            raise BundleIntegrityError(f"the golden set {path} is missing: re-export the bundle")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in GOLDEN_KEYS if k not in data.files]
            if missing:
                raise BadInputError(f"{path} lacks {', '.join(missing)}: re-export the bundle")
            return {k: np.asarray(data[k]) for k in data.files}


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle folder (or its manifest.json); a missing or malformed manifest is BadInputError."""
    path = Path(path)
    manifest_path = path if path.name == MANIFEST_NAME else path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BadInputError(f"{path} is not a bundle: {manifest_path} is missing (make one with edgecnn export)")
    try:
        manifest = json.loads(manifest_path.read_text(), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise BadInputError(f"{manifest_path} is not valid JSON ({exc}): re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise BadInputError(f"{manifest_path} must hold a JSON object")
    version = manifest.get("format_version", BUNDLE_FORMAT_VERSION)
    if manifest.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT or not isinstance(version, int):
        raise BadInputError(f"{manifest_path} is not an edgecnn bundle manifest")
    if version > BUNDLE_FORMAT_VERSION:
        raise BadInputError(
            f"{manifest_path} has bundle format {version}, newer than this edgecnn understands "
            f"({BUNDLE_FORMAT_VERSION}): upgrade edgecnn on this device"
        )
    raw = manifest.get("artifacts")
    if not isinstance(raw, list):
        raise BadInputError(f"{manifest_path}: 'artifacts' must be a list")
    artifacts = [ArtifactEntry.from_dict(item, i) for i, item in enumerate(raw)]
    root = manifest_path.parent.resolve()
    for entry in artifacts:
        # A manifest must not point outside its bundle (a tampered or hand-edited file could).
        resolved = (root / entry.path).resolve()
        if root not in resolved.parents:
            raise BadInputError(f"{manifest_path}: artifact path {entry.path!r} leaves the bundle folder")
    _check_other_paths(manifest, root, manifest_path)
    return Bundle(root=root, manifest=manifest, artifacts=artifacts)


def _check_other_paths(manifest: dict, root: Path, manifest_path: Path) -> None:
    """The tuning records and the golden set are bundle files like the artifacts: inside the folder, or refused."""
    from edgecnn.validate import inside

    records = manifest.get("tuning") or []
    for index, record in enumerate(records if isinstance(records, list) else []):
        if isinstance(record, dict):
            inside(root, record.get("path"), f"{manifest_path}: tuning[{index}].path")
    golden = manifest.get("golden")
    if isinstance(golden, dict) and golden.get("path") is not None:
        inside(root, golden.get("path"), f"{manifest_path}: golden.path")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def file_record(root: Path, path: Path) -> dict:
    """{path, sha256, bytes} for a file inside `root`."""
    return {"path": path.relative_to(root).as_posix(), "sha256": file_sha256(path), "bytes": path.stat().st_size}


def artifact_entry(root: Path, files: Iterable[Path], *, format: str, runtime: str, precision: str,
                   input: dict, **extra: Any) -> ArtifactEntry:
    """An entry for files already inside `root`; the first file is the one a runtime opens."""
    files = [Path(f) for f in files]
    records = [file_record(root, f) for f in files]
    main = records[0]
    return ArtifactEntry(path=main["path"], format=format, runtime=runtime, precision=precision,
                         sha256=main["sha256"], bytes=main["bytes"], files=records, input=dict(input),
                         extra=extra)


def write_golden(path: Path, inputs: np.ndarray, labels: np.ndarray, logits: np.ndarray) -> None:
    """Save the golden set (uncompressed: devices load it fast and it is small)."""
    if not (len(inputs) == len(labels) == len(logits)):
        raise BadInputError("golden set: inputs, labels and logits must have the same length")
    np.savez(path, inputs=inputs.astype(np.float32), labels=labels.astype(np.int64),
             logits=logits.astype(np.float32))


_STAGING_TAGS = ("staging", "scratch", "old")


def reap_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders a killed export of `out` left beside it (their process is gone)."""
    removed = []
    for candidate in out.parent.glob(f".{glob.escape(out.name)}.*-*-*"):
        tag, _, rest = candidate.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if tag in _STAGING_TAGS and pid.isdigit() and candidate.is_dir() and not process_alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


class BundleWriter:
    """Build a bundle in a temporary folder beside `out`, then move it into place in one rename.

    Nothing is left half-written: an exception inside the `with` block removes the temporary
    folder, and an existing `out` is kept unless `force` (checked before any work starts).
    """

    def __init__(self, out: str | Path, *, force: bool = False):
        self.out = Path(out)
        self.force = force
        if self.out.exists() and not force:
            raise BadInputError(f"{self.out} already exists: pass --force to replace it, or choose another --out")
        if self.out.exists() and not self.out.is_dir():
            raise BadInputError(f"{self.out} exists and is not a folder")
        # Claimed now, before the minutes of work: a second export to the same folder is refused at once.
        self._claim = claim_output(self.out)
        self._release = weakref.finalize(self, release_claim, self._claim)  # also when __enter__ is never reached
        self.root: Path | None = None

    def __enter__(self) -> "BundleWriter":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        reap_stale_staging(self.out)
        # The PID in the name lets a later run tell a dead export's leftovers from a live one's.
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-{os.getpid()}-", dir=self.out.parent))
        self.scratch = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.scratch-{os.getpid()}-", dir=self.out.parent))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        if exc_type is not None and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        self._release()

    def path(self, relative: str) -> Path:
        """A path inside the bundle being written (its folder is created)."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self, manifest: dict) -> Path:
        """Write the manifest and move the finished bundle to `out` (replacing it when forced)."""
        manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **manifest}
        write_json_atomic(self.root / MANIFEST_NAME, manifest)
        os.chmod(self.root, 0o755)  # mkdtemp makes it 0700; a bundle is meant to be copied around
        if self.out.exists():
            if not self.force:
                raise BadInputError(f"{self.out} appeared while exporting: pass --force to replace it")
            # Move the old bundle aside first so a failure between the two renames loses nothing.
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}-0")
            os.replace(self.out, old)
            os.replace(self.root, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.root, self.out)
        return self.out


def checkpoint_of(bundle) -> Path | None:
    """The checkpoint the bundle was exported from (manifest model.checkpoint), when it still exists.

    Export records an absolute path; a relative one is taken from the bundle folder.
    """
    model = (getattr(bundle, "manifest", None) or {}).get("model")
    value = model.get("checkpoint") if isinstance(model, dict) else None
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = Path(bundle.root) / path
    return path if path.is_file() else None


def replay_of(bundle) -> dict | None:
    """How to re-run the foreign source the bundle was exported from (manifest model.replay), if recorded."""
    model = (getattr(bundle, "manifest", None) or {}).get("model")
    value = model.get("replay") if isinstance(model, dict) else None
    return value if isinstance(value, dict) else None


def default_threads_for(bundle) -> int:
    """The bundle's device profile `threads`, else the physical cores."""
    profile = getattr(bundle, "profile", None) if bundle is not None else None
    if isinstance(profile, dict):
        value = profile.get("threads")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    from edgecnn.host import physical_cores

    return physical_cores()
