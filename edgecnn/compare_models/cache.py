"""What a rerun reuses from --out: the bundles exported, and the candidates already measured.

    OUT/bundles/<source>-<target>/        the deploy bundle (edgecnn.export's, untouched)
    OUT/cache/exports/<source>-<target>.json   what it was exported from and with (the key), and what the
                                               export refused (an int8 that failed its search), so a refusal
                                               is not searched again
    OUT/candidates/<source>-<target>-<precision>.json   the key and the rows measured (one per device)

A key is a plain dict of everything that changes the result (source fingerprint, target, precisions,
data, bench settings, devices); an entry whose key differs is stale and done again. Every file is
written atomically, so an interrupted run leaves finished entries whole and nothing half-written.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Optional

from edgecnn.atomic import read_json, write_json_atomic
from edgecnn.compare_models.results import CandidateResult

# Failures that may not happen again (the device back, a crash, a checkpoint fixed): tried again on a rerun.
RETRIED = ("bench", "training failed", "loading failed", "the model did not load", "verify could not run",
           "verify did not report")


def slug(text: str) -> str:
    """A file-name-safe form of a label; a short hash keeps two labels that clean to the same text apart."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")[:60] or "source"
    return clean if clean == text else f"{clean}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class CompareCache:
    """The --out folder of one compare run: bundle folders, export keys, measured candidates."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def bundle_dir(self, label: str, target: str) -> Path:
        return self.out / "bundles" / f"{slug(label)}-{slug(target)}"

    def _export_file(self, label: str, target: str) -> Path:
        return self.out / "cache" / "exports" / f"{slug(label)}-{slug(target)}.json"

    def _candidate_file(self, label: str, target: str, precision: str) -> Path:
        return self.out / "candidates" / f"{slug(label)}-{slug(target)}-{slug(precision)}.json"

    def exported(self, label: str, target: str, key: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The record of an export with this key whose bundle is still there, else None."""
        record = _read(self._export_file(label, target))
        bundle = self.bundle_dir(label, target)
        if record is None or record.get("key") != key or not (bundle / "manifest.json").is_file():
            return None
        return record

    def record_export(self, label: str, target: str, key: dict[str, Any], refused: dict[str, str]) -> None:
        write_json_atomic(self._export_file(label, target), {"key": key, "refused": refused})

    def finished(self, label: str, target: str, precision: str,
                 key: dict[str, Any]) -> Optional[list[CandidateResult]]:
        """The rows of a candidate finished with this key, else None. Finished: measured, or failed for a reason
        that another try would repeat (export refused, INT8 not kept, verify failed); a failure that may pass
        next time (a device unreachable, a bench that crashed, a model that did not load) is tried again."""
        record = _read(self._candidate_file(label, target, precision))
        if record is None or record.get("key") != key or not record.get("rows"):
            return None
        rows = [CandidateResult.from_dict(row) for row in record["rows"]]
        return None if any(row.reason.startswith(RETRIED) for row in rows) else rows

    def record_candidate(self, label: str, target: str, precision: str, key: dict[str, Any],
                         rows: list[CandidateResult]) -> None:
        write_json_atomic(self._candidate_file(label, target, precision),
                          {"key": key, "rows": [row.to_dict() for row in rows]})


def _read(path: Path) -> Optional[dict[str, Any]]:
    """A cache file, or None when it is missing or unreadable (then the work is simply done again)."""
    if not path.is_file():
        return None
    try:
        record = read_json(path, what="a compare cache file")
    except Exception:  # noqa: BLE001 - a damaged cache entry is redone, never fatal
        return None
    return record if isinstance(record, dict) else None


__all__ = ["CompareCache", "slug"]
