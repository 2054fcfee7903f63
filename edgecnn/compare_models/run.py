"""`compare`: every candidate measured (or reused from --out), then the answer per device and the report.

The loop goes source by source, target by target, one bundle at a time; each candidate's rows are written
to --out as soon as they exist, so an interrupted run continues where it stopped. A candidate already
finished with the same key is not measured again (unless force); one that failed for a reason that may pass
next time (an unreachable device, a crashed bench) is tried again (edgecnn.compare_models.cache).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Optional

from edgecnn.api.progress import ProgressCallback, Reporter
from edgecnn.compare_models.cache import CompareCache
from edgecnn.compare_models.measure import bundle_plan, export_cached, measure_bundle, reason_of
from edgecnn.compare_models.pareto import answers
from edgecnn.compare_models.results import FAILED, HERE, CandidateResult, CompareResult
from edgecnn.compare_models.settings import CompareSettings
from edgecnn.compare_models.sources import SourcePlan, fingerprint, model_size, plan_sources, trained_checkpoint


def compare(*sources: str, progress: Optional[ProgressCallback] = None, write_report: bool = True,
            **options: Any) -> CompareResult:
    """Which model to ship: every SOURCE (and --zoo model) × target × precision exported, verified on `data`,
    benched here or on devices (`remote=`), ranked per device. Options are CompareSettings' fields:
    targets, data (required), zoo, precisions, out, max_latency_ms, max_size_mb, force, threads, warmup,
    min_time_s, iters, epochs, verify_limit, calib_data, search_budget_s, remote, source_options."""
    settings = CompareSettings(sources=list(sources) + list(options.pop("sources", [])), **options)
    return run_compare(settings, progress=progress, write_report=write_report)


class _Run:
    """The state of one compare run: counts for the progress line, the rows so far."""

    def __init__(self, settings: CompareSettings, reporter: Reporter, total: int):
        self.settings, self.reporter, self.total = settings, reporter, total
        self.cache = CompareCache(settings.out)
        self.started = time.monotonic()
        self.rows: list[CandidateResult] = []
        self.done = self.measured_now = self.reused = 0

    def finish(self, rows: list[CandidateResult], *, reused: bool) -> None:
        """One candidate done: its rows kept, the progress line sent (done / left / time so far)."""
        self.rows += rows
        self.done += 1
        self.reused += reused
        self.measured_now += not reused
        first = rows[0]
        elapsed = time.monotonic() - self.started
        if reused or all(r.measured for r in rows):
            what = "reused" if reused else "measured"
        elif len(rows) == 1:
            what = f"failed: {first.reason}"
        else:  # per device: one may be measured while another is unreachable
            what = "; ".join(f"{r.device}: {'measured' if r.measured else 'failed: ' + r.reason}" for r in rows)
        self.reporter.step(f"[{self.done}/{self.total} done, {self.total - self.done} left, "
                           f"{elapsed // 60:.0f}:{elapsed % 60:02.0f} elapsed] {first.name}: {what}",
                           self.done, self.total)


def run_compare(settings: CompareSettings, *, progress: Optional[ProgressCallback] = None,
                write_report: bool = True) -> CompareResult:
    """Measure what is not measured yet, then answer; writes OUT/compare.json (and OUT/report.html)."""
    from edgecnn.atomic import claim_output, release_claim

    reporter = Reporter(progress)
    plans = plan_sources(list(settings.sources), settings.zoo, settings.out, settings.source_options)
    run = _Run(settings, reporter, len(plans) * len(settings.targets) * len(settings.precisions))
    reporter.note(f"{run.total} candidates: {len(plans)} model(s) x {len(settings.targets)} target(s) x "
                  f"{len(settings.precisions)} precision(s), in {settings.out}")
    claim = claim_output(settings.out)  # two compares in one --out would measure the same candidates twice
    try:
        for plan in plans:
            _compare_source(plan, run)
    finally:
        release_claim(claim)
    samples = sorted({row.samples for row in run.rows if row.samples})
    counted = f" Verified on {', '.join(map(str, samples))} samples." if samples else ""
    result = CompareResult(
        candidates=run.rows, method=method_text(settings) + counted,
        answers=answers(run.rows, max_latency_ms=settings.max_latency_ms, max_size_mb=settings.max_size_mb),
        settings=settings.describe(), measured_now=run.measured_now, reused=run.reused,
        seconds=time.monotonic() - run.started)
    from edgecnn.atomic import write_json_atomic

    if write_report:
        from edgecnn.compare_models.page import write_page

        result.report_html = str(write_page(result, settings.out / "report.html"))
    write_json_atomic(settings.out / "compare.json", result.to_dict())
    return result


class _Model:
    """The source's loaded model, its fingerprint and size, loaded only when something must be measured."""

    def __init__(self, plan: SourcePlan, run: _Run):
        self.plan, self.run = plan, run
        self.model: Any = None
        self.problem: Optional[str] = None
        self.params = self.macs = None
        self.fingerprint = ""

    def prepare(self) -> None:
        """Train a zoo model when --out has no finished checkpoint; fingerprint the source file."""
        settings, note = self.run.settings, self.run.reporter.note
        try:
            if self.plan.zoo:
                trained_checkpoint(self.plan, settings.data, epochs=settings.epochs, note=note)
            self.fingerprint = fingerprint(self.plan)
        except Exception as exc:  # noqa: BLE001 - a model that cannot be trained is failed rows, the rest go on
            self.problem = f"{'training' if self.plan.zoo else 'loading'} failed: {reason_of(exc)}"

    def load(self) -> Any:
        if self.model is None and self.problem is None:
            from edgecnn.api import load

            try:
                self.model = load(self.plan.source, **self.plan.options)
                self.params, self.macs = model_size(self.model)
            except Exception as exc:  # noqa: BLE001
                self.problem = f"loading failed: {reason_of(exc)}"
        return self.model


def _compare_source(plan: SourcePlan, run: _Run) -> None:
    handle = _Model(plan, run)
    handle.prepare()
    for target in run.settings.targets:
        for export_precision, precisions in bundle_plan(list(run.settings.precisions)):
            _compare_bundle(handle, target, export_precision, precisions, run)


def _candidate_key(handle: _Model, target: str, precision: str, settings: CompareSettings) -> dict:
    return {"source": handle.fingerprint, "target": target, "precision": precision, "data": str(settings.data),
            "verify_limit": settings.verify_limit, "bench": settings.bench_key()}


def _compare_bundle(handle: _Model, target: str, export_precision: str, precisions: list[str], run: _Run) -> None:
    """The candidates one bundle holds: reused when finished, else exported (cached), verified and benched."""
    settings, label = run.settings, handle.plan.label
    keys = {p: _candidate_key(handle, target, p, settings) for p in precisions}
    pending = []
    for precision in precisions:
        done = None if settings.force or handle.problem else run.cache.finished(label, target, precision,
                                                                                  keys[precision])
        if done is not None:
            run.finish(done, reused=True)
        else:
            pending.append(precision)
    if not pending:
        return
    base = CandidateResult(source=label, target=target, precision=export_precision)
    model = handle.load()
    if model is None:
        return _fail_all(run, base, pending, handle.problem or "the model did not load", keys)
    base = replace(base, params=handle.params, macs=handle.macs)
    export_key = {"source": handle.fingerprint, "target": target, "precision": export_precision,
                  "calib": str(settings.calib_data), "search_budget_s": settings.search_budget_s}
    bundle, refused = export_cached(model, handle.plan, target, export_precision, key=export_key,
                                    settings=settings, note=run.reporter.note)
    if bundle is None:
        _fail_all(run, base, [p for p in pending if p != "fp32" or export_precision == "fp32"], refused, keys)
        if "fp32" in pending and export_precision != "fp32":  # fp32 does not fall with the int8 search
            _compare_bundle(handle, target, "fp32", ["fp32"], run)
        return
    measured = measure_bundle(bundle, model, base, pending, settings)
    for precision in pending:
        rows = measured[precision]
        run.cache.record_candidate(label, target, precision, keys[precision], rows)
        run.finish(rows, reused=False)


def _fail_all(run: _Run, base: CandidateResult, precisions: list[str], reason: str, keys: dict) -> None:
    for precision in precisions:
        rows = [replace(base, precision=precision, status=FAILED, reason=reason)]
        run.cache.record_candidate(base.source, base.target, precision, keys[precision], rows)
        run.finish(rows, reused=False)


def method_text(settings: CompareSettings) -> str:
    """How every number was measured, in words (printed under the table, in the report and --json)."""
    from edgecnn.bench.settings import DEFAULT_MIN_ITERS

    runs = (f"{settings.iters} timed runs" if settings.iters
            else f"timed runs for at least {settings.min_time_s:g} s (and {DEFAULT_MIN_ITERS} runs)")
    threads = f"{settings.threads} threads" if settings.threads else "threads from each target's device profile"
    where = ("on each device by its own edgecnn bench" if settings.on_devices
             else f"on {HERE}, each artifact in its own process")
    return (f"Latency: batch 1, {settings.warmup} warm-up runs, then {runs}, {threads}, {where}; perf_counter_ns "
            "around the runtime call alone; p50/p90 by linear interpolation (numpy.percentile). Peak memory: the "
            "bench child's peak RSS. Accuracy: top-1 on the labelled samples of "
            f"{settings.data}{f' (at most {settings.verify_limit})' if settings.verify_limit else ''}, run here by "
            "each runtime; drop = the same model's PyTorch fp32 top-1 on the same samples minus the candidate's. "
            "Front: no other candidate at least as accurate and as fast (better in one); ties on both stay on it; "
            "an emulated device's latency is shown, never ranked.")


__all__ = ["compare", "method_text", "run_compare"]
