"""One source on one target: export (cached), verify on the labelled data, bench here or on the devices.

Each stage that fails turns the candidates it concerns into failed rows with the reason, and the rest go
on: an int8 export refused still leaves fp32 measured, an unreachable device still leaves the others.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from edgecnn.compare_models.cache import CompareCache
from edgecnn.compare_models.results import FAILED, HERE, CandidateResult
from edgecnn.compare_models.settings import CompareSettings
from edgecnn.compare_models.sources import SourcePlan

Note = Callable[[str], None]


def bundle_plan(precisions: list[str]) -> list[tuple[str, list[str]]]:
    """(export precision, candidate precisions it holds): an int8/fp16 bundle carries fp32 beside it, so fp32
    is measured in the first such bundle and exported alone only when nothing else is asked for."""
    others = [p for p in precisions if p != "fp32"]
    if not others:
        return [("fp32", ["fp32"])]
    plan = [(p, [p]) for p in others]
    if "fp32" in precisions:
        plan[0] = (others[0], ["fp32", others[0]])
    return plan


def reason_of(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def export_cached(model: Any, plan: SourcePlan, target: str, precision: str, *, key: dict, settings: CompareSettings,
                  note: Note) -> tuple[Any, Optional[str]]:
    """(Bundle, None), reused from --out when its key matches, else exported; (None, reason) when refused."""
    from edgecnn.api import Bundle, export

    cache = CompareCache(settings.out)
    label = f"{plan.label}@{precision}"
    record = None if settings.force else cache.exported(label, target, key)
    if record is not None:
        refused = record.get("refused") or {}
        return (None, refused["reason"]) if refused else (Bundle.open(cache.bundle_dir(label, target)), None)
    note(f"{plan.label}: exporting for {target} ({precision})")
    calib = settings.calib_data if settings.calib_data is not None else (None if plan.zoo else settings.data)
    try:
        bundle = export(model, target=target, precision=precision, out=cache.bundle_dir(label, target), force=True,
                        calib_data=calib, data_root=settings.data_root, search_budget=settings.search_budget_s)
    except Exception as exc:  # noqa: BLE001 - one refused export is one failed row, the rest go on
        reason = f"export refused: {reason_of(exc)}"
        cache.record_export(label, target, key, {"reason": reason})
        return None, reason
    cache.record_export(label, target, key, {})
    return bundle, None


def int8_not_kept(bundle: Any, precision: str) -> str:
    """Why the bundle has no artifact of `precision` (the int8 search's record when there is one)."""
    searches = bundle.manifest.get("int8_search") or {}
    for record in searches.values():
        status, note = record.get("status"), record.get("note") or record.get("reason") or ""
        return f"INT8 not kept ({status}): {note}".rstrip(": ")
    return f"export made no {precision} artifact for this target"


def verify_rows(bundle: Any, model: Any, settings: CompareSettings) -> tuple[dict[str, Any], Optional[str]]:
    """{precision: verify's ArtifactResult} on --data, here, against the model's own PyTorch fp32; or a reason."""
    try:
        report = bundle.verify(data=settings.data, data_root=settings.data_root, reference=model,
                               limit=settings.verify_limit, threads=settings.threads)
    except Exception as exc:  # noqa: BLE001
        return {}, f"verify could not run: {reason_of(exc)}"
    return {artifact.precision: artifact for artifact in report.artifacts}, None


def bench_rows(bundle: Any, settings: CompareSettings) -> tuple[list[dict], dict[str, str], str]:
    """(bench rows, each with its device, {device: why it failed}, method) here or on the devices named."""
    from edgecnn.api.device_runs import bench

    try:
        result = bench(bundle.path, threads=settings.threads, warmup=settings.warmup, iters=settings.iters,
                       min_time=None if settings.iters else settings.min_time_s, remote=settings.remote)
    except Exception as exc:  # noqa: BLE001
        return [], {"*": f"bench failed: {reason_of(exc)}"}, ""
    if settings.on_devices:
        failed = {run.device.name: "bench on the device failed (unreachable, or no runtime there): "
                                   f"{run.error or 'no result'}" for run in result.runs if not run.ok}
        return result.rows, failed, "timed on each device by its own edgecnn bench"
    report = result.to_dict()
    env = report.get("environment") or {}
    here = {"name": HERE, "cpu": env.get("cpu_model"), "physical_cores": env.get("physical_cores"),
            "load_average": [env.get("loadavg_before"), env.get("loadavg_after")]}
    return [{**row, "device": here} for row in report["artifacts"]], {}, result.method


def _apply_verify(row: CandidateResult, verified: Any) -> CandidateResult:
    row = replace(row, top1=_round(verified.top1, 3), reference_top1=_round(verified.reference_top1, 3),
                  drop=_round(verified.drop, 3), agreement=_round(verified.agreement, 5),
                  verify_passed=verified.passed, samples=verified.samples, runtime=verified.runtime,
                  artifact=verified.path)
    if not verified.passed:
        failed = [f"{c.name} {c.value:.4g} (limit {c.op} {c.threshold:g})" for c in verified.checks
                  if c.passed is False and c.value is not None and c.threshold is not None]
        row = replace(row, status=FAILED, reason="verify failed: " + ("; ".join(failed) or "a check failed"))
    return row


def _apply_bench(row: CandidateResult, timed: dict) -> CandidateResult:
    latency, device = timed.get("latency_ms") or {}, timed.get("device") or {}
    return replace(row, p50_ms=_round(latency.get("p50"), 4), p90_ms=_round(latency.get("p90"), 4),
                   p99_ms=_round(latency.get("p99"), 4), peak_rss_mb=_round(timed.get("peak_rss_mb"), 1),
                   size_mb=_round(timed.get("size_mb"), 4), threads=timed.get("threads"),
                   runtime=timed.get("runtime") or row.runtime, device=device.get("name") or HERE,
                   emulated=device.get("emulated") or None, device_info=dict(device))


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def measure_bundle(bundle: Any, model: Any, base: CandidateResult, precisions: list[str],
                   settings: CompareSettings) -> dict[str, list[CandidateResult]]:
    """Verify and bench one bundle; {precision: one row per device} for the precisions asked of it."""
    present = {entry.get("precision") for entry in bundle.artifacts}
    rows: dict[str, list[CandidateResult]] = {}
    for precision in [p for p in precisions if p not in present]:
        rows[precision] = [replace(base, precision=precision, status=FAILED, reason=int8_not_kept(bundle, precision),
                                   bundle=str(bundle.path))]
    todo = [p for p in precisions if p in present]
    if not todo:
        return rows
    verified, verify_problem = verify_rows(bundle, model, settings)
    timed, device_failures, _ = bench_rows(bundle, settings)
    for precision in todo:
        row = replace(base, precision=precision, bundle=str(bundle.path),
                      size_mb=_entry_mb(bundle, precision))
        row = _apply_verify(row, verified[precision]) if precision in verified else replace(
            row, status=FAILED, reason=verify_problem or "verify did not report this artifact")
        found = [t for t in timed if t.get("precision") == precision]
        rows[precision] = [_apply_bench(row, t) for t in found] + [
            replace(row, device=device if device != "*" else row.device, status=FAILED, reason=reason)
            for device, reason in device_failures.items()]
        if not rows[precision]:
            rows[precision] = [replace(row, status=FAILED, reason="bench did not time this artifact")]
    return rows


def _entry_mb(bundle: Any, precision: str) -> Optional[float]:
    """The artifact's size from the manifest (all its files), for rows bench never reached."""
    for entry in bundle.artifacts:
        if entry.get("precision") == precision:
            files = entry.get("files") or []
            total = sum(int(f.get("bytes") or 0) for f in files) or int(entry.get("bytes") or 0)
            return round(total / 1e6, 4)
    return None


__all__ = ["bundle_plan", "bench_rows", "export_cached", "int8_not_kept", "measure_bundle", "reason_of",
           "verify_rows"]
