"""bench, verify and tune on a bundle (or one artifact file), here or on devices: what `Bundle.bench/.verify/
.tune` and the CLI commands call. torch-free: these run on a device that has only its runtime.

Each returns a typed result whose `to_dict()` is the CLI's `--json`; with `remote` naming devices the
same command runs there (edgecnn.remote) and the result is a RemoteResult of the merged JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from edgecnn.api.progress import ProgressCallback, Reporter
from edgecnn.api.results import BenchResult, RemoteResult, TuneResult, VerifyReport
from edgecnn.errors import BadInputError, CheckFailedError
from edgecnn.remote.dispatch import RemoteOptions

Batches = Union[int, str, Sequence[int]]
Thresholds = Union[Sequence[str], Mapping[str, Any], None]


def bench(path: Union[str, Path], *, runtime: Optional[str] = None, threads: Optional[int] = None,
          batch: Batches = 1, warmup: int = 10, iters: Optional[int] = None, min_time: Optional[float] = None,
          baseline: Optional[str] = None, timeout: Optional[float] = None, untuned: bool = False,
          remote: Optional[RemoteOptions] = None,
          progress: Optional[ProgressCallback] = None) -> Union[BenchResult, RemoteResult]:
    """Latency, throughput, load time and memory of each artifact, each in its own process (`edgecnn bench`)."""
    from edgecnn import bench as bench_lib
    from edgecnn.validate import optional_seconds

    optional_seconds(min_time, "--min-time")
    optional_seconds(timeout, "--timeout")
    batches = batch_text(batch)
    if remote is not None and remote.requested:
        return run_on_devices("bench", path, remote, progress, runtime=runtime, forwarded={
            "--runtime": runtime, "--threads": threads, "--batch": batches, "--warmup": warmup, "--iters": iters,
            "--min-time": min_time, "--baseline": baseline, "--timeout": timeout, "--untuned": untuned})
    reporter = Reporter(progress)
    targets, bundle = bench_lib.targets_from_path(path, runtime, untuned=untuned)
    _announce_tuning(targets, threads, reporter)
    if bench_lib.is_torch_baseline(baseline):
        # The reference: PyTorch eager on the checkpoint the manifest records, in its own process
        # (the only child that imports torch).
        reference = bench_lib.reference_runtime()
        if not any(t.runtime == reference for t in targets):
            targets.append(bench_lib.torch_reference_target(bundle, targets))
        baseline = next(t.name for t in targets if t.runtime == reference)
    settings = bench_lib.BenchSettings(
        threads=threads if threads is not None else bench_lib.default_threads_for(bundle),
        batches=bench_lib.parse_batches(batches), warmup=warmup, iters=iters, min_time_s=min_time, timeout_s=timeout)
    bench_lib.resolve_baseline(targets, baseline)  # fail before measuring anything
    total, done = len(targets) * len(settings.batches), [0]

    def on_result(target, batch_size, row) -> None:
        done[0] += 1
        reporter.step(f"{target.name} batch {batch_size}", done[0], total)

    report = bench_lib.run_benchmark(targets, settings, baseline=baseline, on_result=on_result)
    report["path"] = str(path)
    if bundle is not None:
        report["bundle"] = {"root": str(bundle.root), "target": bundle.target, "device_profile": bundle.profile}
    for skipped in report["skipped"]:
        reporter.note(f"skipped {skipped['name']} at batch {skipped['batch']}: {skipped['reason']}")
    if not report["artifacts"]:
        raise BadInputError("no artifact could be benchmarked at the batch sizes asked for")
    return BenchResult(report=report, method=settings.describe())


def batch_text(batch: Batches) -> str:
    """1 -> '1', [1, 8] -> '1,8'; a string is the CLI's --batch as typed."""
    if isinstance(batch, str):
        return batch
    if isinstance(batch, int):
        return str(batch)
    return ",".join(str(b) for b in batch)


def _announce_tuning(targets, threads: Optional[int], reporter: Reporter) -> None:
    """Say which tuning file set the artifacts' settings; an explicit thread count wins over the tuned one."""
    tuned = sorted({t.tuned_from for t in targets if t.tuned_from})
    if not tuned:
        return
    if threads is not None:
        for target in targets:
            target.threads = None
    names = ", ".join(t.name for t in targets if t.tuned_from)
    reporter.note(f"tuned settings from {', '.join(tuned)} for {names}" + (" (threads from --threads)" if threads else "")
                  + "; --untuned for the runners' defaults")


def verify(path: Union[str, Path], *, data: Any = None, data_root: Optional[Union[str, Path]] = None,
           runtime: Optional[str] = None, max_drop: Optional[float] = None, min_agreement: Optional[float] = None,
           min_cosine: Optional[float] = None, max_abs_diff: Optional[float] = None, thresholds: Thresholds = None,
           reference: Any = None, reference_source: str = "auto",
           precision: Optional[str] = None, threads: Optional[int] = None, batch: int = 32,
           limit: Optional[int] = None, seed: Optional[int] = None, untuned: bool = False, check: bool = False,
           remote: Optional[RemoteOptions] = None,
           progress: Optional[ProgressCallback] = None) -> Union[VerifyReport, RemoteResult]:
    """Accuracy parity of every artifact against the PyTorch fp32 reference (`edgecnn verify`).

    A failed check gives `passed=False`; it raises CheckFailedError only with `check=True`.
    """
    from edgecnn.data.specs import Images, as_data
    from edgecnn.verify import VerifyFailedError, VerifySettings, build_overrides

    data = as_data(data)
    threshold_options = threshold_texts(thresholds)
    if remote is not None and remote.requested:
        if isinstance(data, Images) or reference is not None or data_root is not None:
            raise BadInputError("images in memory, reference= and data_root= are on this machine: drop them with "
                                "on=/fleet= (the devices verify against the bundle's golden set or their own data)")
        result = run_on_devices("verify", path, remote, progress, runtime=runtime, forwarded={
            "--data": data, "--runtime": runtime, "--max-drop": max_drop, "--min-agreement": min_agreement,
            "--min-cosine": min_cosine, "--max-abs-diff": max_abs_diff, "--threshold": threshold_options,
            "--reference-source": reference_source, "--precision": precision, "--threads": threads,
            "--untuned": untuned, "--batch": batch, "--limit": limit, "--seed": seed})
        if check and not result.passed:
            raise CheckFailedError("; ".join(result.problems))
        return result
    overrides = build_overrides(max_drop=max_drop, min_agreement=min_agreement, min_cosine=min_cosine,
                                max_abs_diff=max_abs_diff, thresholds=threshold_options)
    in_memory = reference is not None and not isinstance(reference, (str, Path))
    settings = VerifySettings(data=data, data_root=data_root, runtime=runtime, threads=threads, overrides=overrides,
                              reference=None if in_memory else reference, reference_source=reference_source.lower(),
                              precision=precision, limit=limit, batch=batch, seed=seed, untuned=untuned,
                              reference_model=InMemoryReference.of(reference) if in_memory else None)
    reporter = Reporter(progress)
    from edgecnn.verify import verify as verify_path

    report = verify_path(Path(path), settings, progress=lambda label, done, total: reporter.step(label, done, total))
    tuned = sorted({a.tuned_from for a in report.artifacts if a.tuned_from})
    if tuned:
        reporter.note(f"tuned settings from {', '.join(tuned)} for "
                      f"{', '.join(a.name for a in report.artifacts if a.tuned_from)}; --untuned for the runners' defaults")
    if check and not report.passed:
        raise VerifyFailedError(report.failure_message(), report)
    return report


class InMemoryReference:
    """A model in memory (an edgecnn.load Model, or an nn.Module) as verify's live reference: PyTorch fp32 on it.

    What lets a bundle exported from an in-memory module be verified on new data: nothing on disk can
    re-run that module, but the caller still holds it.
    """

    label = "PyTorch fp32 of the in-memory model"

    def __init__(self, module: Any, name: str):
        self.module, self.name = module, name

    @classmethod
    def of(cls, reference: Any) -> "InMemoryReference":
        module = getattr(reference, "module", reference)  # a Model, or the nn.Module itself
        return cls(module, getattr(reference, "name", type(module).__name__))

    def live_logits(self, inputs, *, batch: int):
        from edgecnn.export.torch_eval import torch_logits

        return torch_logits(self.module, inputs, batch_size=batch)


def threshold_texts(thresholds: Thresholds) -> list[str]:
    """{'int8.max_drop': 2} or ['int8.max_drop=2'] -> the CLI's --threshold values."""
    if thresholds is None:
        return []
    if isinstance(thresholds, Mapping):
        return [f"{key}={'off' if value is None else value}" for key, value in thresholds.items()]
    if isinstance(thresholds, str):
        return [thresholds]
    return [str(item) for item in thresholds]


def tune(path: Union[str, Path], *, runtime: Optional[str] = None, budget: float = 300.0, min_time: float = 1.0,
         warmup: int = 10, limit: Optional[int] = None, thresholds: Thresholds = None, force: bool = False,
         remote: Optional[RemoteOptions] = None,
         progress: Optional[ProgressCallback] = None) -> Union[TuneResult, RemoteResult]:
    """The fastest runtime settings on this machine that still pass the accuracy gate (`edgecnn tune`);
    stored in the bundle (tuning/<device signature>.json), which bench and verify then use here."""
    from edgecnn.atomic import check_output_path
    from edgecnn.tune import TuneSettings, tune as tune_path
    from edgecnn.validate import seconds
    from edgecnn.verify import build_overrides

    seconds(budget, "--budget")
    seconds(min_time, "--min-time")
    options = threshold_texts(thresholds)
    if remote is not None and remote.requested:
        # Tuned on each device by its own edgecnn tune; its tuning file and manifest record come back here.
        return run_on_devices("tune", path, remote, progress, runtime=runtime, forwarded={
            "--runtime": runtime, "--budget": budget, "--min-time": min_time, "--warmup": warmup, "--limit": limit,
            "--threshold": options or None, "--force": force})
    path = Path(path)
    # The tuning file and the manifest's record of it are written into the bundle: it must take them.
    check_output_path(path if path.name == "manifest.json" else path / "manifest.json", option="the bundle at")
    settings = TuneSettings(runtime=runtime, budget_s=budget, min_time_s=min_time, warmup=warmup, limit=limit,
                            overrides=build_overrides(thresholds=options), force=force)
    reporter, planned = Reporter(progress), [None]

    def on_candidate(name: str, done: int, total: int, candidate) -> None:
        p50 = "-" if candidate.p50 is None else f"{candidate.p50:.2f} ms"
        chosen = ", ".join(f"{k}={v}" for k, v in candidate.settings.items())
        reporter.step(f"{name}: {chosen} {p50} {'pass' if candidate.passed else 'fail'}", done, planned[0])

    report = tune_path(path, settings, on_candidate=on_candidate, on_plan=lambda total: planned.__setitem__(0, total))
    return TuneResult(report=report, method=settings.describe())


def run_on_devices(command: str, path: Union[str, Path], remote: RemoteOptions,
                   progress: Optional[ProgressCallback], *, forwarded: Mapping[str, Any],
                   runtime: Optional[str] = None, fetch_engine: bool = False) -> RemoteResult:
    """`edgecnn COMMAND PATH` on the devices `remote` names; their JSON merged (edgecnn.remote.run_remote)."""
    from edgecnn.remote import run_remote

    run = run_remote(command, path, options=remote, forwarded=forwarded, runtime=runtime,
                     fetch_engine=fetch_engine, note=Reporter(progress).note)
    return RemoteResult(report=run.report, runs=run.runs, problems=tuple(run.problems))


def remote_options(on: Union[str, Sequence[str], None], fleet: Union[str, Path, None], *,
                   identity: Union[str, Path, None] = None, accept_new_host_key: bool = False,
                   keep: bool = False) -> Optional[RemoteOptions]:
    """RemoteOptions from the API's keyword arguments, or None when no device is named."""
    if not on and not fleet:
        return None
    devices = [on] if isinstance(on, str) else list(on or [])
    return RemoteOptions(on=devices or None, fleet=Path(fleet) if fleet else None,
                         identity=Path(identity) if identity else None,
                         accept_new_host_key=accept_new_host_key, keep=keep)


__all__ = ["batch_text", "bench", "remote_options", "run_on_devices", "threshold_texts", "tune", "verify"]
