"""ONNX Runtime's INT8 method: static QDQ graphs by quantize_static, layers kept in float by removing
their Q/DQ pairs, the chosen mix quantized again with nodes_to_exclude.

Recipes, in order: the requested calibration method, then percentile when that was minmax; 8- or 7-bit
weights as the profile's cpu_vnni says. The search and the decision are edgecnn.quantize's and the
pipeline's; this module only writes and reads files.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.quantize import Candidate, Int8Job, Int8Method, Layer, Recipe

_RECORDED = ("activation_type", "weight_type", "per_channel", "symmetric", "reduce_range", "method", "pair_bound",
             "widened", "distillation")


class OnnxRuntimeInt8(Int8Method):
    runtime = "onnxruntime"
    format = "onnx"
    fp32_artifact = "onnx/model.fp32.onnx"
    artifact = "onnx/model.int8.onnx"
    requantizes = True
    emulation_options = {"graph_optimization": "disable"}

    def __init__(self) -> None:
        self._fallback = None  # FloatFallback reads the fp32 graph once per export

    def recipes(self, job: Int8Job) -> list[Recipe]:
        """The requested calibration method first; percentile calibration next when minmax misses the gate.

        Where weights are 7-bit (x86 without VNNI), the pair-bound recipe comes first: at the same speed its logit
        error against fp32 is 32 % / 14 % below plain 7-bit on EfficientNet-Lite1/Lite2, with this host's kernels
        equal to exact arithmetic (benchmarks/int8_avx2_weights.md); plain 7-bit stays as the next recipe.
        """
        methods = [job.calib_method] + (["percentile"] if job.calib_method == "minmax" else [])
        reduce_range = job.profile.reduce_range
        bits = 7 if reduce_range else 8
        recipes = [Recipe(label=f"{method}, per-channel, {bits}-bit weights, float logits",
                          settings={"method": method, "per_channel": True, "reduce_range": reduce_range,
                                    "weight_bits": bits}) for method in methods]
        if job.distillable:  # last: it costs training time, and runs only when the plain recipes miss the aim
            recipes.append(distilled_recipe(job.calib_method, bits))
        if reduce_range:  # x86 without VNNI: 8-bit weights on the channels that cannot saturate (pair_bound.py)
            recipes.insert(0, Recipe(
                label=f"{job.calib_method}, per-channel, 8-bit weights where int16 pairs cannot saturate, else 7-bit, "
                      "float logits",
                settings={"method": job.calib_method, "per_channel": True, "reduce_range": True, "weight_bits": "7/8",
                          "pair_bound": True}))
        return recipes

    def source(self, job: Int8Job, settings: dict) -> Path:
        """The fp32 ONNX a recipe quantizes: the artifact's, or for the distilled recipe its tuned weights on the
        grid this runtime's quantizer derives (records the distillation in the recipe's settings)."""
        if not settings.get("distilled"):
            return job.fp32_path
        from edgecnn.quantize.distill import Grid
        from edgecnn.quantize.distilled import distilled_source

        grid = Grid("symmetric" if settings.get("symmetric_activations") else "asymmetric",
                    64 if settings["reduce_range"] else 127)  # ONNX Runtime's 7-bit weights are codes -64..64
        path, record = distilled_source(job, grid)
        settings["distillation"] = record
        return path

    def scoring(self, job: Int8Job, recipe: dict) -> dict:
        """The device's arithmetic, whatever this host's: ONNX Runtime's int8 kernels where they compute exactly
        (a VNNI or ARM CPU, or 7-bit weights, which cannot saturate), else an exact float emulation.

        On x86 without VNNI the u8*s8 kernels sum pairs of products in int16 and saturate with 8-bit weights
        (Lite2 for jetson scored 65 % agreement that way); a VNNI CPU or a GPU accumulates in int32. The
        emulation runs the same Q/DQ graph with graph optimizations off: every Q/DQ pair stays a float op, so
        the int8 values are the device's and the sums are float32 (exact to float rounding).
        """
        from edgecnn.host import int8_accumulates_exactly

        if recipe.get("pair_bound"):
            return {"options": {}, "arithmetic": "ONNX Runtime's int8 kernels on this host (8-bit weights only on the "
                                                 "channels whose int16 pairs cannot saturate, 7-bit elsewhere)"}
        if recipe.get("reduce_range"):
            return {"options": {}, "arithmetic": "ONNX Runtime's int8 kernels on this host (7-bit weights cannot saturate)"}
        if int8_accumulates_exactly():
            return {"options": {}, "arithmetic": "ONNX Runtime's int8 kernels on this host (this CPU accumulates in "
                                                 "int32)", "emulate_without_vnni": True}
        return emulated("this host's int8 kernels saturate with 8-bit weights (x86 without VNNI); the device's do not")

    def write(self, job: Int8Job, recipe: Recipe, folder: Path) -> Candidate:
        from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

        settings = recipe.settings
        job.stage(f"quantizing to INT8 with ONNX Runtime ({settings['method']}, per-channel, "
                  f"{settings['weight_bits']}-bit weights)")
        q = quantize_onnx_int8(self.source(job, settings), folder / "model.int8.onnx", job.calibration,
                               method=settings["method"], reduce_range=settings["reduce_range"])
        if settings.get("pair_bound"):
            settings["widened"] = _widen(job, q.path)
        # What the file is, recorded with the recipe (the trace and the calibration record read it).
        settings.update(activation_type=q.activation_type, weight_type=q.weight_type, symmetric=q.symmetric,
                        float_logits=float_logits(q.path) > 0)
        return Candidate(q.path, {"quantization": "static QDQ"})

    def layers(self, job: Int8Job, full: Path) -> list[Layer]:
        from edgecnn.backends.onnxruntime.sensitivity import onnx_layers

        return onnx_layers(full, job.fp32_path, job.golden_inputs)

    def keep_float(self, job: Int8Job, full: Candidate, nodes: tuple[str, ...], out: Path) -> Candidate:
        from edgecnn.backends.onnxruntime.sensitivity import FloatFallback

        if self._fallback is None:
            self._fallback = FloatFallback(job.fp32_path)
        return Candidate(self._fallback(full.path, nodes, out), dict(full.entry))

    def requantize(self, job: Int8Job, recipe: dict, nodes: tuple[str, ...], out: Path) -> Candidate:
        """The chosen layers excluded by quantize_static itself (nodes_to_exclude), calibrated again without them."""
        from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8

        job.stage(f"quantizing again with ONNX Runtime, {len(nodes)} layer(s) excluded")
        q = quantize_onnx_int8(self.source(job, recipe), out, job.calibration, method=recipe["method"],
                               reduce_range=recipe["reduce_range"], nodes_to_exclude=nodes)
        if recipe.get("pair_bound"):
            _widen(job, q.path)
        float_logits(q.path)
        return Candidate(q.path, {"quantization": "static QDQ"})

    def calibration_record(self, job: Int8Job, recipe: dict, chosen: dict) -> dict:
        record = {key: recipe.get(key) for key in _RECORDED}
        record["weight_bits_note"] = job.profile.weight_bits_note
        return record


def distilled_recipe(method: str, bits: int, *, prefix: str = "", **settings) -> Recipe:
    """The weights first distilled onto the int8 grid on the calibration images (edgecnn.quantize.distill)."""
    return Recipe(label=f"{prefix}{method}, per-channel, {bits}-bit weights distilled onto the int8 grid, float logits",
                  settings={"method": method, "per_channel": True, "reduce_range": bits == 7, "weight_bits": bits,
                            "distilled": True, **settings})


def _widen(job: Int8Job, path: Path) -> dict:
    """8-bit codes on the channels of ONNX Runtime's 7-bit graph whose int16 pairs cannot saturate."""
    from edgecnn.backends.onnxruntime.pair_bound import activation_code_max, widen_weights

    job.stage("INT8: 8-bit weights on the channels that cannot saturate int16 pairs")
    return widen_weights(path, job.fp32_path, activation_code_max(path, job.calibration))


def emulated(why: str) -> dict:
    """Scoring by an exact float emulation of the Q/DQ graph (ONNX Runtime with graph optimizations off)."""
    return {"options": dict(OnnxRuntimeInt8.emulation_options), "emulate_without_vnni": True,
            "arithmetic": f"exact float emulation of the Q/DQ graph (ONNX Runtime, graph optimizations off): {why}"}


def float_logits(path) -> int:
    """The logits stay float (no Q/DQ pair on the graph output): 8-bit logits only cost accuracy."""
    import onnx

    from edgecnn.quantize.qdq import float_outputs

    model = onnx.load(str(path))
    removed = float_outputs(model)
    if removed:
        onnx.save(model, str(path))
    return removed
