"""The INT8 step of the export: one place for every runtime.

After a backend's build step has written the fp32 artifact, the pipeline hands the backend's declared
INT8 method (`Backend.int8`, an `edgecnn.quantize.Int8Method`) to `edgecnn.quantize.search_int8`, with
the golden set, verify's int8 gate and the runners' scorer and timer (`RunnerMeasure`). Then, here and
nowhere else: the decision is noted, the calibration recorded, the chosen file copied into the bundle
and added as an artifact, or (no int8 kept) the search recorded under the manifest's `int8_search`.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np

from edgecnn.build_context import BuildContext, timed
from edgecnn.errors import BadInputError


def int8_step(ctx: BuildContext) -> None:
    """Choose and add the int8 artifact of `ctx`'s target (when int8 was asked and the backend searches it)."""
    backend = ctx.profile.backend
    if ctx.precision != "int8" or backend.int8 is None:
        return
    from edgecnn.quantize import Int8Job

    method = backend.int8_method()
    job = Int8Job(fp32_path=ctx.writer.path(method.fp32_artifact), calibration=ctx.data.calibration,
                  golden_inputs=ctx.data.golden_inputs[golden_parts(len(ctx.reference))[0]], scratch=ctx.scratch / f"int8-{backend.name}",
                  input_shape=tuple(ctx.preprocess.input_shape),
                  profile=ctx.profile, calib_method=ctx.request.calib_method,
                  options={"tflite_int8_scheme": ctx.request.tflite_int8_scheme},
                  torch_model=lambda: ctx.torch_model, stage=ctx.stage, warnings=ctx.warnings,
                  distillable=ctx.request.distill and _exported_from_torch(ctx))
    if not method.applies(job):
        return
    (decision, record), seconds = timed(lambda: _search(ctx, method, job))
    calibration = method.calibration_record(job, decision.recipe, decision.entry)
    if calibration is not None:
        ctx.calibration_details[backend.name] = calibration
    if decision.artifact is None:  # passing mixes all ran slower than fp32: the fp32 artifact is the result
        ctx.extra_manifest.setdefault("int8_search", {})[backend.name] = record
        return
    kept = ctx.writer.path(method.artifact)
    files = _copy_with_companions(decision.artifact, kept, method.companions)
    extra = method.entry(job, kept, decision.entry, record)
    scoring = method.scoring(job, decision.recipe)
    if scoring.get("emulate_without_vnni"):  # verify on an AVX2 host checks it in the device's arithmetic
        extra["emulate_without_vnni"] = True
        extra["emulation_options"] = dict(method.emulation_options)
    ctx.add(files, format=method.format, runtime=method.runtime, precision="int8", seconds=seconds,
            score_options=scoring["options"], **{**extra, "layers_in_float": len(decision.float_layers), "int8": record})


def _exported_from_torch(ctx: BuildContext) -> bool:
    """Whether the fp32 ONNX was exported from the very torch module `ctx.torch_model` gives (so a copy of it
    with tuned weights exports to the same graph): not for an ONNX source or a TorchScript module."""
    if getattr(ctx.loaded, "write_onnx", None) is not None:
        return False
    import torch

    return isinstance(ctx.loaded.model, torch.nn.Module) and not isinstance(ctx.loaded.model, torch.jit.ScriptModule)


def _search(ctx: BuildContext, method, job):
    """(decision, manifest record): chosen on one part of the golden set, the gate reported on the other.

    When the choice misses the gate on the part it never saw, the search runs again (in the budget left) held
    to the aim on its own part, so a choice that passed by a photo or two is not what ships; the first choice
    is recorded beside it.
    """
    from edgecnn.bench.candidates import RunnerMeasure
    from edgecnn.quantize import Gate, search_int8

    request = ctx.request
    if not request.search_budget > 0:  # also refuses NaN
        raise BadInputError(f"--search-budget must be more than 0 seconds, got {request.search_budget:g}")
    gate = Gate.for_int8(max_drop=request.max_drop, min_agreement=request.min_agreement)
    chooses, reports = golden_parts(len(ctx.reference))
    measure = RunnerMeasure(tuple(ctx.preprocess.input_shape))
    decision = search_int8(_request(ctx, gate, chooses, request.search_budget), method, job, measure)
    report = _report_part(ctx, gate, decision, method=method, job=job, reports=reports)
    again = whole = None
    if report is not None and not report["passed"] and ctx.loaded.accuracy_meaningful and request.fallback:
        decision, report, again = _search_again(ctx, gate, decision, report, method=method, job=job,
                                                parts=(chooses, reports), measure=measure)
        decision, whole = _held_on_the_whole(ctx, gate, decision, method=method, job=job)
    if decision.note and ctx.loaded.accuracy_meaningful:
        ctx.warnings.append(decision.note)
    record = decision.manifest_record(gate, request.search_budget)
    record["scored_with"] = method.scoring(job, decision.recipe)["arithmetic"]
    if again is not None:
        record["searched_again"] = again
    if whole is not None:
        record["whole_golden"] = whole
    if report is not None:
        record.update(report_part=report, search_part={"samples": int(len(chooses)), "positions": "even"})
        if not report["passed"] and ctx.loaded.accuracy_meaningful and decision.artifact is not None:
            ctx.warnings.append(
                f"int8 passed the gate on the part of the golden set the search chose on, but misses it on the part "
                f"it never saw ({_words(report)}): the choice is closer than it looked; verify on more data")
    if not method.timed and method.untimed_note:
        record["note"] = (record.get("note") or "") + method.untimed_note
    return decision, record


def _request(ctx: BuildContext, gate, chooses: np.ndarray, budget_s: float):
    """The search held to `gate` on the golden positions `chooses`."""
    from edgecnn.quantize import SearchRequest

    labels = ctx.data.golden_labels if ctx.data.labels_meaningful else None
    return SearchRequest(gate=gate, inputs=ctx.data.golden_inputs[chooses], reference=ctx.reference[chooses],
                         labels=None if labels is None else labels[chooses], input_shape=tuple(ctx.preprocess.input_shape),
                         budget_s=budget_s, fallback=ctx.request.fallback and ctx.loaded.accuracy_meaningful,
                         stage=ctx.stage, **_timing_rule(ctx))


def _search_again(ctx: BuildContext, gate, first, first_report: dict, *, method, job, parts, measure):
    """The search once more, held to the aim (agreement >= AIM_AGREEMENT, half the drop) on its own part.

    Returns (decision, report part, record of the two searches); the first choice stays when the budget is
    spent, nothing passes the stricter gate, what passes it buys no speed (slower than fp32, or less than 10 %
    faster), or the second choice does no better on the report part.
    """
    from dataclasses import replace

    from edgecnn.errors import CheckFailedError
    from edgecnn.quantize import AIM_AGREEMENT, Gate, search_int8

    left = ctx.request.search_budget - first.seconds
    strict = Gate(max_drop=None if gate.max_drop is None else gate.max_drop / 2,
                  min_agreement=max(gate.min_agreement or 0.0, AIM_AGREEMENT))
    record = {"why": "the first choice missed the gate on the report part", "gate": strict.to_dict(),
              "first_choice": {"recipe": first.recipe.get("label"), "layers_in_float": first.float_layers,
                               "report_part": first_report}}
    if left <= 0:
        return first, first_report, {**record, "kept": "first choice", "reason": "no search budget left"}
    ctx.stage(f"INT8: the choice misses the gate on the golden samples it did not see; searching again at "
              f"{strict.words()} ({left:.0f} s left)")
    try:
        second = search_int8(_request(ctx, strict, parts[0], left), method,
                             replace(job, scratch=job.scratch / "again"), measure)
    except CheckFailedError as exc:
        return first, first_report, {**record, "kept": "first choice", "reason": str(exc)}
    report = _report_part(ctx, gate, second, method=method, job=job, reports=parts[1])
    record["second_choice"] = {"recipe": second.recipe.get("label"), "layers_in_float": second.float_layers,
                               "status": second.status, "report_part": report}
    if second.artifact is None:  # what holds needs layers in float and buys no speed: no better choice was found,
        # as when nothing passes, so the first stays (its warning says it misses on photos it did not choose on).
        # Dropping int8 here but not there made finding a slow mix cost the user the fast first choice.
        return first, first_report, {**record, "kept": "first choice", "reason": second.note}
    if report["agreement"] < first_report["agreement"]:
        return first, first_report, {**record, "kept": "first choice", "reason": "the second choice did no better"}
    return second, report, {**record, "kept": "second choice"}


def _held_on_the_whole(ctx: BuildContext, gate, decision, *, method, job):
    """(decision, whole-set score): a choice that misses the gate on the whole golden set is not kept.

    Verify checks the whole golden set; a file that passed where the search chose but misses there would
    ship only to fail the user's next command (quickstart exits 1 on it). It passes on the whole whenever the
    report part's miss is made up by the search part's margin: then it stays, with the warning.
    """
    from dataclasses import replace

    from edgecnn.quantize import Int8Status

    whole = _report_part(ctx, gate, decision, method=method, job=job, reports=np.arange(len(ctx.reference)))
    if whole is None:
        return decision, None
    whole["positions"] = "all"
    if whole["passed"]:
        return decision, whole
    note = (f"no int8 artifact kept: the choice ({_recipe_words(decision)}) passed the gate on the part of the "
            f"golden set the search chose on but misses it on the whole set verify checks ({_words(whole)}); "
            f"the fp32 artifact is the result (more calibration or golden data may change that)")
    return replace(decision, status=Int8Status.MISSED, artifact=None, note=note), whole


def _recipe_words(decision) -> str:
    label = decision.recipe.get("label") or "full int8"
    floats = len(decision.float_layers)
    return label + (f", {floats} layer{'s' * (floats != 1)} in float" if floats else "")


MIN_SPLIT = 40  # golden samples below which the set is too small to split (each part would be noise)


def golden_parts(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions the search chooses on, positions the gate is reported on): disjoint halves of the golden set.

    The search picks a recipe and layers by their agreement, so the agreement it saw is the best of several
    draws and optimistic (with 100-150 samples one photo is ~1 point); the export reports the gate on the part
    it never chose on. Even and odd positions, so a class-balanced golden sample stays balanced in both. A set
    under MIN_SPLIT samples is not split (the report part is then empty and the search's own score stands).
    """
    positions = np.arange(n)
    if n < MIN_SPLIT:
        return positions, positions[:0]
    return positions[0::2], positions[1::2]


def _report_part(ctx: BuildContext, gate, decision, *, method, job, reports: np.ndarray) -> dict | None:
    """The kept file's gate on the report part, in the arithmetic the search scored it with (None: nothing to report)."""
    from edgecnn.bench.candidates import RunnerMeasure
    from edgecnn.quantize.gate import score

    if decision.artifact is None or not len(reports):
        return None
    labels = ctx.data.golden_labels[reports] if ctx.data.labels_meaningful else None
    logits = RunnerMeasure(tuple(ctx.preprocess.input_shape)).logits(
        method.runtime, decision.artifact, ctx.data.golden_inputs[reports], precision="int8",
        options=method.scoring(job, decision.recipe)["options"])
    return {"samples": int(len(reports)), "positions": "odd", **score(gate, ctx.reference[reports], logits, labels).to_dict()}


def _words(part: dict) -> str:
    drop = part.get("drop")
    return f"agreement {part['agreement']:.2%}" + ("" if drop is None else f", drop {drop:+.2f} points")


def _timing_rule(ctx: BuildContext) -> dict:
    """Whether this host's latency may decide the int8 result for the profile's device."""
    profile = ctx.profile
    if profile.host_timing_decides():
        return {"timing_decides": True}
    return {"timing_decides": False, "timing_note": (
        f"timed on this {platform.machine()} host for the record only: the {profile.name} device is "
        f"{profile.cpu_arch}, where int8 kernels run differently; measure there (edgecnn bench --on)")}


def _copy_with_companions(source: Path, target: Path, companions: tuple[str, ...]) -> list[Path]:
    """Copy the chosen candidate (and the files that travel with it, e.g. OpenVINO's .bin) into the bundle."""
    files = [Path(shutil.copyfile(source, target))]
    for suffix in companions:
        files.append(Path(shutil.copyfile(source.with_suffix(suffix), target.with_suffix(suffix))))
    return files
