"""`edgecnn quickstart`: the whole pipeline on bundled data, offline, in a few minutes.

train -> export (onnx, x86, arm at fp32+int8; the jetson bundle) -> verify -> bench -> report.

A model of the user's own (`--model timm:NAME`, `FILE.py:FUNCTION`, `FILE.onnx`, ...: edgecnn.sources) is
not trained: it is loaded with its stated preprocessing, `--data` gives the calibration photos and a
disjoint golden set (or `--golden-data`), verify checks the golden set, and bench has no PyTorch eager
baseline (there is no checkpoint to run; speed-ups are then against the slowest artifact).

Every step is the same code the individual commands run, and each writes its JSON into the run
folder, so `edgecnn report RUN_DIR` can rebuild the report from the files alone:

    RUN_DIR/model/model.pt, metrics.json     training
    RUN_DIR/model_card.json                  params, multiply-adds, input
    RUN_DIR/bundles/<target>/                one deploy bundle per target
    RUN_DIR/verify.json                      {"results": [verify report per bundle]}
    RUN_DIR/bench.json                       {"results": [bench report per bundle, PyTorch baseline]}
    RUN_DIR/summary.json, report.html        the results table and the report

verify and bench run as `edgecnn verify` / `edgecnn bench` subprocesses: bench must measure each
artifact in a clean process anyway, and this keeps the host's torch out of those numbers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from edgecnn.atomic import read_json
from edgecnn.errors import BadInputError, CheckFailedError

BENCH_WARMUP = 10
BENCH_MIN_TIME_S = 1.0


@dataclass
class QuickstartSettings:
    model: str = "mobilenet_v2"
    data: str | None = None  # None: digits for a zoo model; a model of your own needs photos
    out: Path = Path("runs/quickstart")
    epochs: int | None = None  # None: the model's training recipe (mobilenet_v2: 15 epochs)
    precision: str = "int8"  # bundles hold fp32 next to it
    targets: tuple[str, ...] | None = None  # default: every target this machine can build
    force: bool = False
    threads: int | None = None
    bench_min_time_s: float = BENCH_MIN_TIME_S
    data_root: str | None = None
    seed: int = 0
    # A model of the user's own: its weights and stated preprocessing, as `edgecnn export` takes them
    # (ExportRequest fields: weights, state_dict, input_size, resize, mean, std, channels, classes).
    source_options: dict = field(default_factory=dict)
    golden_data: str | None = None  # a foreign model's golden set apart from --data


@dataclass
class QuickstartResult:
    run_dir: Path
    report: Path
    rows: list[dict]
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def available_targets() -> tuple[list[str], list[str]]:
    """(targets this machine can build, targets skipped with the reason)."""
    from edgecnn.backends import backends

    chosen, skipped = [], []
    for backend in backends(deploy_only=True):
        if not backend.host_target:
            continue
        missing = [m for m in backend.build_modules if importlib.util.find_spec(m) is None]
        if missing:
            skipped.append(f"{backend.host_target} (needs {', '.join(missing)})")
        else:
            chosen.append(backend.host_target)
    return chosen, skipped


def _precision_for(target: str, wanted: str) -> str:
    """`wanted` where the target runs it, else the lowest precision it does run (not every runtime has int8)."""
    from edgecnn.profiles import PRECISIONS, load_profile

    supported = load_profile(target).precisions
    if wanted in supported:
        return wanted
    return next(p for p in reversed(PRECISIONS) if p in supported)


def _built_on_device(target: str) -> bool:
    """Whether the target's final artifact is built (and so benchmarked) on the device itself."""
    from edgecnn.profiles import load_profile

    return load_profile(target).backend.built_on_device


def run_quickstart(settings: QuickstartSettings, step: Callable[[str], None] | None = None) -> QuickstartResult:
    """Run every stage; raise CheckFailedError at the end when any artifact failed verify."""
    step = step or (lambda message: None)
    started = time.perf_counter()
    foreign = _is_foreign(settings)  # every flag is checked before the run folder is touched
    if settings.data is None:
        if foreign:
            raise BadInputError(f"{settings.model} is a model of your own: pass --data imagefolder:DIR (photos to "
                                "calibrate on and, apart from those, to verify on) and its --classes FILE")
        settings = replace(settings, data="digits")
    run_dir = _fresh_run_dir(settings)
    targets = _chosen_targets(settings, step)
    checkpoint = None if foreign else _train(settings, run_dir, step)
    if foreign:
        step(f"1/5 loading {settings.model} (a model of your own: not trained)")
    bundles = _export_all(settings, settings.model if foreign else str(checkpoint), targets, run_dir, step)
    if foreign:
        write_source_card(run_dir, settings, next(iter(bundles.values())))
    failures = _verify_all(settings, bundles, run_dir, step, on_golden=foreign)
    _bench_all(settings, bundles, checkpoint, run_dir, step)

    step("5/5 writing the report")
    from edgecnn.report import summary_rows, write_report

    report_path = write_report(run_dir)
    return QuickstartResult(run_dir=run_dir, report=report_path, rows=summary_rows(run_dir), failures=failures,
                            seconds=time.perf_counter() - started)


def _train(settings: QuickstartSettings, run_dir: Path, step: Callable[[str], None]) -> Path:
    """Train the zoo model on --data; its checkpoint (the model card written beside it)."""
    step(f"1/5 training {settings.model} on {settings.data}")
    from edgecnn.train import TrainConfig, train

    trained = train(TrainConfig(model=settings.model, data=settings.data, out_dir=str(run_dir / "model"),
                                epochs=settings.epochs, seed=settings.seed, data_root=settings.data_root,
                                threads=settings.threads), progress=True)
    write_model_card(run_dir, trained.checkpoint, trained.metrics)
    return trained.checkpoint


def _is_foreign(settings: QuickstartSettings) -> bool:
    """Whether --model is the user's own (not trained here); checks what only goes with one or the other."""
    from edgecnn.sources import is_foreign

    foreign = is_foreign(settings.model)
    if foreign and settings.epochs is not None:
        raise BadInputError(f"--epochs trains a zoo model; {settings.model} is yours and is not trained here")
    if not foreign and settings.golden_data:
        raise BadInputError("--golden-data goes with a model of your own; a zoo model is verified on its "
                            "data's test split")
    stated = [key for key, value in settings.source_options.items() if value is not None]
    if not foreign and stated:
        flags = ", ".join("--" + key.replace("_", "-") for key in stated)
        raise BadInputError(f"{flags} describe a model of your own; zoo model {settings.model} brings its own")
    return foreign


def _fresh_run_dir(settings: QuickstartSettings) -> Path:
    run_dir = Path(settings.out)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not settings.force:
            raise BadInputError(f"{run_dir} already holds a run: pass --force to replace it, or --out another folder")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _chosen_targets(settings: QuickstartSettings, step: Callable[[str], None]) -> list[str]:
    targets, skipped = available_targets()
    if settings.targets:
        unknown = [t for t in settings.targets if t not in targets]
        if unknown:
            raise BadInputError(f"cannot build {', '.join(unknown)} here (available: {', '.join(targets)})")
        targets = list(settings.targets)
    for reason in skipped:
        step(f"skipping {reason}")
    return targets


def _export_all(settings: QuickstartSettings, source: str, targets: list[str], run_dir: Path,
                step: Callable[[str], None]) -> dict[str, Path]:
    """One bundle per target from the trained checkpoint, or from the user's model with --data as calibration."""
    from edgecnn.pipeline import ExportRequest, export_bundle

    own = {} if source != settings.model else {
        **settings.source_options, "calib_data": settings.data, "golden_data": settings.golden_data}
    bundles: dict[str, Path] = {}
    for index, target in enumerate(targets, 1):
        precision = _precision_for(target, settings.precision)
        step(f"2/5 exporting {target} ({index}/{len(targets)}): fp32 + {precision}")
        report = export_bundle(ExportRequest(source=source, target=target, out=run_dir / "bundles" / target,
                                             precision=precision, data_root=settings.data_root,
                                             seed=settings.seed, **own), stage=lambda message: None)
        bundles[target] = report.bundle.root
        for line in report.warnings:
            step(f"   warning ({target}): {line}")
    return bundles


def _verify_all(settings: QuickstartSettings, bundles: dict[str, Path], run_dir: Path,
                step: Callable[[str], None], *, on_golden: bool = False) -> list[str]:
    """Every artifact against PyTorch on the full test split of the training data (a model of the user's own:
    on the golden set, the photos calibration did not use); the failed targets."""
    data = [] if on_golden else ["--data", settings.data, *(["--data-root", settings.data_root]
                                                            if settings.data_root else [])]
    verify_results, failures = [], []
    for target, bundle in bundles.items():
        step(f"3/5 verifying {target}")
        payload, code = _run_json(["verify", str(bundle), *data], run_dir / "verify" / f"{target}.json")
        payload["target"] = target
        verify_results.append(payload)
        if code == 1:
            failures.append(target)
    _write(run_dir / "verify.json", {"results": verify_results})
    return failures


def _bench_all(settings: QuickstartSettings, bundles: dict[str, Path], checkpoint: Path | None, run_dir: Path,
               step: Callable[[str], None]) -> None:
    """Each artifact in its own process, and PyTorch eager as the baseline."""
    from edgecnn.backends import baseline_backend

    results = []
    common = ["--warmup", str(BENCH_WARMUP), "--min-time", str(settings.bench_min_time_s), "--batch", "1"]
    if settings.threads:
        common += ["--threads", str(settings.threads)]
    for target, bundle in bundles.items():
        if _built_on_device(target):
            continue  # its engine is built and benchmarked on the device
        step(f"4/5 benchmarking {target}")
        payload, _ = _run_json(["bench", str(bundle), *common], run_dir / "bench" / f"{target}.json")
        payload["target"] = target
        results.append(payload)
    if checkpoint is None:
        step("4/5 no PyTorch eager baseline: a model of your own has no edgecnn checkpoint to run "
             "(speed-ups are against the slowest artifact of each target)")
        _write(run_dir / "bench.json", {"results": results})
        return
    step("4/5 benchmarking the PyTorch eager baseline")
    baseline = baseline_backend().name
    payload, _ = _run_json(["bench", str(checkpoint), "--runtime", baseline, *common], run_dir / "bench" / "pytorch.json")
    payload["target"] = "pytorch"
    results.append(payload)
    _write(run_dir / "bench.json", {"results": results})


def write_model_card(run_dir: Path, checkpoint: Path, metrics: dict) -> Path:
    """params, multiply-adds and input of the trained model (counted on the meta device)."""
    from edgecnn.checkpoint import read_checkpoint
    from edgecnn.zoo import get_spec
    from edgecnn.zoo.profile import profile_spec

    payload = read_checkpoint(checkpoint)
    spec = get_spec(payload["arch"])
    preprocess = payload["preprocess_spec"]
    profile = profile_spec(spec, num_classes=payload["num_classes"], side=preprocess.size)
    card = {
        "name": spec.name, "family": spec.family, "params": profile.total_params, "macs": profile.total_macs,
        "input_size": list(preprocess.input_shape), "num_classes": payload["num_classes"],
        "data": payload.get("data"), "test_top1": metrics.get("test_top1"), "checkpoint": str(checkpoint),
    }
    return _write(run_dir / "model_card.json", card)


def write_source_card(run_dir: Path, settings: QuickstartSettings, bundle: Path) -> Path:
    """The model card of the user's own model: counted on the loaded model, top-1 from the golden set."""
    from edgecnn.sources import StatedPreprocess, load_source
    from edgecnn.zoo.profile import profile_model

    options = settings.source_options
    stated = StatedPreprocess(input_size=options.get("input_size"), channels=options.get("channels"))
    loaded = load_source(settings.model, weights=options.get("weights"), state_dict=options.get("state_dict"),
                         stated=stated, need_normalization=False)
    manifest = read_json(bundle / "manifest.json", what="the bundle manifest")
    golden = manifest.get("golden") or {}
    profile = profile_model(loaded.model, tuple(manifest["input"]["shape"]))
    card = {
        "name": manifest["model"]["name"], "family": manifest["model"]["family"], "source": settings.model,
        "params": profile.total_params, "macs": profile.total_macs, "input_size": list(manifest["input"]["shape"]),
        "num_classes": manifest["model"]["num_classes"], "data": golden.get("source") or settings.data,
        "test_top1": golden.get("reference_top1"), "checkpoint": None,
    }
    return _write(run_dir / "model_card.json", card)


def _run_json(args: list[str], json_path: Path) -> tuple[dict, int]:
    """Run one edgecnn command in a subprocess and read the JSON it wrote; exit 2 is an error."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "edgecnn", *args, "--json", str(json_path)]
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "160")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1) or not json_path.is_file():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CheckFailedError(f"`edgecnn {' '.join(args[:2])}` failed (exit {done.returncode}): {last}")
    return read_json(json_path, what=f"`edgecnn {args[0]}` output"), done.returncode


def _write(path: Path, payload) -> Path:
    from edgecnn.atomic import write_json_atomic

    return write_json_atomic(path, payload)
