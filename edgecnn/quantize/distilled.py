"""The distilled recipe's source: the model's fp32 ONNX again, with weights tuned by `distill.distilled_copy`.

A Q/DQ method (ONNX Runtime, TensorRT) quantizes this file instead of the fp32 artifact; it is the same graph
with the same node names (the tuned copy keeps the model's modules, so `export_onnx` writes what it wrote for
the artifact), so the candidate's layers read as any recipe's. Layers are never kept in float from it: the search
falls back from the best plain recipe (edgecnn.quantize.fallback.search_int8).
One distillation per grid and export (the job keeps it for the second search).
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.quantize.distill import DistillUnavailable, Grid, distilled_copy
from edgecnn.quantize.method import Int8Job, RecipeUnavailable

# Share of the search budget left when the recipe is written that the distillation may take: the rest is for
# scoring it and, if it still misses, the float-layer fallback.
BUDGET_SHARE = 0.5


def distilled_source(job: Int8Job, grid: Grid) -> tuple[Path, dict]:
    """(the tuned fp32 ONNX to quantize, the distillation record). Raises RecipeUnavailable with the reason."""
    from edgecnn.export.onnx import export_onnx

    if not job.distillable or job.torch_model is None:
        raise RecipeUnavailable("the fp32 graph was not exported from a torch module here (an ONNX source), so a "
                                "tuned copy would not export to the same graph")
    key = (grid.activations, grid.weight_qmax)
    if key in job.distilled:
        return job.distilled[key]
    folder = job.scratch / "int8-distilled"
    path = folder / f"{grid.activations}-w{grid.weight_qmax}.fp32.onnx"
    seconds = BUDGET_SHARE * (job.search_seconds_left if job.search_seconds_left is not None else 300.0)
    job.stage(f"INT8: distilling the weights onto the int8 grid ({grid.words()}, up to {seconds:.0f} s)")
    try:
        tuned, record = distilled_copy(job.torch_model(), job.calibration, grid, seconds=seconds, stage=job.stage)
    except DistillUnavailable as why:
        raise RecipeUnavailable(f"distillation skipped: {why}") from why
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(tuned, tuple(job.input_shape), path, opset=job.profile.opset, sample=job.calibration[:2])
    job.distilled[key] = (path, record)
    return path, record
