"""TensorRT's INT8 method: symmetric Q/DQ ONNX graphs for explicit quantization, checked in ONNX Runtime
(the same Q/DQ semantics), the most sensitive layers kept in float by removing their Q/DQ pairs (TensorRT
then builds them in fp16/fp32). ONNX Runtime's speed on these graphs says nothing about TensorRT's, so
candidates are not timed.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.backends.onnxruntime.int8 import OnnxRuntimeInt8, distilled_recipe, emulated
from edgecnn.backends.tensorrt.bundle_parts import QDQ_SUFFIX, qdq_record
from edgecnn.quantize import Candidate, Int8Job, Recipe


class TensorRTInt8(OnnxRuntimeInt8):
    artifact = f"onnx/model{QDQ_SUFFIX}"
    timed = False
    untimed_note = "latency not compared with fp32 here: TensorRT is not on this host; bench the engines on the device"

    def recipes(self, job: Int8Job) -> list[Recipe]:
        # 8-bit weights: TensorRT runs them at the speed of 7 bits and more exactly. They are scored by the
        # emulation (see scoring), so the host's CPU no longer pushes the choice to 7 bits on AVX2 hosts.
        # Percentile calibration next when minmax misses the gate, as for ONNX Runtime.
        methods = [job.calib_method] + (["percentile"] if job.calib_method == "minmax" else [])
        distilled = [distilled_recipe(job.calib_method, 8, symmetric=True, symmetric_activations=True,
                                      prefix="symmetric Q/DQ, ")] if job.distillable else []
        return [Recipe(label=f"symmetric Q/DQ, {method}, per-channel 8-bit weights",
                       settings={"method": method, "symmetric": True, "per_channel": True, "reduce_range": False})
                for method in methods] + distilled

    def scoring(self, job: Int8Job, recipe: dict) -> dict:
        """The exact emulation on a host whose int8 kernels saturate; a VNNI or ARM host's kernels are exact too."""
        from edgecnn.host import int8_accumulates_exactly

        if int8_accumulates_exactly():
            return {"options": {}, "emulate_without_vnni": True, "arithmetic": "ONNX Runtime's int8 kernels on this "
                    "host (int32 accumulation, as TensorRT's on the GPU)"}
        return emulated("TensorRT accumulates int8 in int32 on the GPU; this host's int8 kernels are not its arithmetic")

    def write(self, job: Int8Job, recipe: Recipe, folder: Path) -> Candidate:
        bits = 7 if recipe.settings["reduce_range"] else 8
        job.stage(f"quantizing the TensorRT Q/DQ graph ({bits}-bit weights)")
        return self._quantize(job, folder / Path(self.artifact).name, reduce_range=recipe.settings["reduce_range"],
                              method=recipe.settings["method"], source=self.source(job, recipe.settings))

    def requantize(self, job: Int8Job, recipe: dict, nodes: tuple[str, ...], out: Path) -> Candidate:
        job.stage(f"quantizing the TensorRT Q/DQ graph again, {len(nodes)} layer(s) excluded")
        return self._quantize(job, out, reduce_range=recipe["reduce_range"], method=recipe["method"],
                              nodes_to_exclude=nodes, source=self.source(job, recipe))

    def calibration_record(self, job: Int8Job, recipe: dict, chosen: dict) -> None:
        return None

    def entry(self, job: Int8Job, kept: Path, chosen: dict, record: dict) -> dict:
        """The Q/DQ file's quantization record; layers kept in float on purpose are exempt from the
        "not fed by DequantizeLinear" rule, any other break of TensorRT's fusions is said."""
        from edgecnn.backends.tensorrt.qdq_check import check_tensorrt_qdq

        kept_float = [f"'{layer['node']}'" for layer in record.get("layers_in_float") or []]
        if kept_float:
            problems = [p for p in check_tensorrt_qdq(kept) if not any(name in p for name in kept_float)]
            if problems:
                # Still a valid graph: TensorRT builds it, with that layer in float too. Said, not refused.
                record["trt_rule_notes"] = problems
                job.warnings.append(f"with {len(kept_float)} layer(s) in float the Q/DQ graph also leaves "
                                    f"{len(problems)} other layer(s) outside TensorRT's int8 fusions: {problems[0]}")
        return dict(chosen)

    def _quantize(self, job: Int8Job, out: Path, *, source: Path, **options) -> Candidate:
        from edgecnn.backends.tensorrt.quantize import quantize_qdq_int8

        quant = quantize_qdq_int8(source, out, job.calibration, **options)
        return Candidate(quant.path, {"quantization": qdq_record(quant, name=Path(self.artifact).name)})
