"""OpenVINO's INT8 method: NNCF post-training IRs per preset, layers kept in float by wiring their input
past its FakeQuantize, the chosen mix quantized again with NNCF's ignored_scope.

Measured on EfficientNet-Lite1/Lite2 (150 calibration photos, 150 other photos as the golden set, 7-bit
weights, AMD EPYC AVX2): the mixed preset (asymmetric activations) agrees with PyTorch on 98.67 % / 96.67 %,
the performance preset (symmetric) 98.00 % / 96.00 %, at the same speed; SmoothQuant on convolutions
(alpha 0.5) changed nothing, outlier-robust activation ranges (mean of per-image min/max) lost ~25 points
(ReLU6 ranges clipped), and channel alignment fails inside NNCF 3.4. So: mixed first, performance next.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.quantize import Candidate, Int8Job, Int8Method, Layer, Recipe

PRESETS = ("mixed", "performance")


class OpenVinoInt8(Int8Method):
    runtime = "openvino"
    format = "openvino"
    fp32_artifact = "openvino/model.fp32.xml"
    artifact = "openvino/model.int8.xml"
    companions = (".bin",)
    requantizes = True
    emulation_options = {"fake_quantize": "emulate"}

    def recipes(self, job: Int8Job) -> list[Recipe]:
        """NNCF's presets, mixed first. Where weights are 7-bit (x86 without VNNI), the pair-bound recipe comes first
        (edgecnn.backends.openvino.pair_bound): 8-bit weights on the channels whose int16 pairs cannot saturate
        cut the logit error against fp32 by 12 % / 6 % on EfficientNet-Lite1/Lite2 at the same speed, with this
        host's kernels as close to exact arithmetic as plain 7-bit (benchmarks/int8_openvino_pair_bound.json);
        it runs NNCF twice. Plain 7-bit stays as the next recipe.
        """
        reduce_range = job.profile.reduce_range
        recipes = []
        for preset in PRESETS:
            settings = {"preset": preset, "bias_correction": "full", "reduce_range": reduce_range,
                        "weight_bits": 7 if reduce_range else 8}
            activations = "asymmetric" if preset == "mixed" else "symmetric"
            recipes.append(Recipe(label=f"NNCF {preset} preset ({activations} activations), full bias correction, "
                                        f"{settings['weight_bits']}-bit weights", settings=settings))
        if reduce_range:  # x86 without VNNI: 8-bit weights on the channels that cannot saturate (pair_bound.py)
            recipes.insert(0, Recipe(
                label="NNCF mixed preset (asymmetric activations), full bias correction, 8-bit weights where int16 "
                      "pairs cannot saturate, else 7-bit",
                settings={"preset": "mixed", "bias_correction": "full", "reduce_range": True, "weight_bits": "7/8",
                          "pair_bound": True}))
        return recipes

    def scoring(self, job: Int8Job, recipe: dict) -> dict:
        """The profile's arithmetic, whatever this host's: 7-bit weights cannot saturate and a VNNI host sums in
        int32, so the CPU plugin's int8 kernels are the device's there; 8-bit weights on x86 without VNNI
        saturate here (a VNNI device's do not), so they are scored by the float emulation of every FakeQuantize
        (edgecnn.backends.openvino.emulate)."""
        from edgecnn.host import int8_accumulates_exactly

        if recipe.get("pair_bound"):
            return {"options": {}, "arithmetic": "OpenVINO's int8 kernels on this host (8-bit weights only on the "
                                                 "channels whose int16 pairs cannot saturate, 7-bit elsewhere)"}
        if recipe.get("reduce_range"):
            return {"options": {}, "arithmetic": "OpenVINO's int8 kernels on this host (7-bit weights cannot saturate)"}
        if int8_accumulates_exactly():
            return {"options": {}, "emulate_without_vnni": True,
                    "arithmetic": "OpenVINO's int8 kernels on this host (this CPU accumulates in int32)"}
        return {"options": dict(self.emulation_options), "emulate_without_vnni": True,
                "arithmetic": "exact float emulation of every FakeQuantize (OpenVINO CPU plugin, no int8 kernels): "
                              "this host's int8 kernels saturate with 8-bit weights (x86 without VNNI); the device's "
                              "do not"}

    def write(self, job: Int8Job, recipe: Recipe, folder: Path) -> Candidate:
        return self._nncf(job, recipe.settings, folder / "model.int8.xml")

    def layers(self, job: Int8Job, full: Path) -> list[Layer]:
        from edgecnn.backends.openvino.fallback import ov_layers

        return ov_layers(full, job.fp32_path, job.golden_inputs)

    def keep_float(self, job: Int8Job, full: Candidate, nodes: tuple[str, ...], out: Path) -> Candidate:
        from edgecnn.backends.openvino.fallback import keep_in_float

        return Candidate(keep_in_float(full.path, nodes, out), dict(full.entry))

    def requantize(self, job: Int8Job, recipe: dict, nodes: tuple[str, ...], out: Path) -> Candidate:
        return self._nncf(job, recipe, out, ignored=nodes)

    def calibration_record(self, job: Int8Job, recipe: dict, chosen: dict) -> dict:
        return {"preset": chosen.get("preset", recipe.get("preset")), "fake_quantize_nodes": chosen.get("fake_quantize_nodes"),
                "reduce_range": job.profile.reduce_range, "weight_bits_note": job.profile.weight_bits_note,
                **({"pair_bound": True, "widened": chosen.get("widened")} if recipe.get("pair_bound") else {})}

    def entry(self, job: Int8Job, kept: Path, chosen: dict, record: dict) -> dict:
        return {"quantization": "NNCF post-training", "fake_quantize_nodes": chosen.get("fake_quantize_nodes")}

    @staticmethod
    def _nncf(job: Int8Job, recipe: dict, out: Path, *, ignored: tuple[str, ...] = ()) -> Candidate:
        """One NNCF run with a recipe's settings; `ignored` (node names) stay float (NNCF's ignored_scope)."""
        from edgecnn.backends.openvino.quantize import quantize_openvino_int8

        job.stage(f"quantizing to INT8 with NNCF ({recipe['preset']} preset"
                  + (", 8-bit weights where int16 pairs cannot saturate" if recipe.get("pair_bound") else "")
                  + (f", {len(ignored)} layer(s) in its ignored scope)" if ignored else ")"))
        if recipe.get("pair_bound"):  # NNCF with and without its overflow fix, mixed per output channel
            from edgecnn.backends.openvino.pair_bound import quantize_pair_bound

            q, widened = quantize_pair_bound(job.fp32_path, out, job.calibration, preset=recipe["preset"],
                                             ignored_nodes=tuple(ignored))
            return Candidate(q.xml_path, {"preset": q.preset, "fake_quantize_nodes": q.fake_quantize_nodes,
                                          "widened": widened})
        q = quantize_openvino_int8(job.fp32_path, out, job.calibration, preset=recipe["preset"],
                                   reduce_range=recipe["reduce_range"], ignored_nodes=tuple(ignored))
        return Candidate(q.xml_path, {"preset": q.preset, "fake_quantize_nodes": q.fake_quantize_nodes})
