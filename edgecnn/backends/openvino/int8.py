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

    def recipes(self, job: Int8Job) -> list[Recipe]:
        reduce_range = job.profile.reduce_range
        recipes = []
        for preset in PRESETS:
            settings = {"preset": preset, "bias_correction": "full", "reduce_range": reduce_range,
                        "weight_bits": 7 if reduce_range else 8}
            activations = "asymmetric" if preset == "mixed" else "symmetric"
            recipes.append(Recipe(label=f"NNCF {preset} preset ({activations} activations), full bias correction, "
                                        f"{settings['weight_bits']}-bit weights", settings=settings))
        return recipes

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
                "reduce_range": job.profile.reduce_range, "weight_bits_note": job.profile.weight_bits_note}

    def entry(self, job: Int8Job, kept: Path, chosen: dict, record: dict) -> dict:
        return {"quantization": "NNCF post-training", "fake_quantize_nodes": chosen.get("fake_quantize_nodes")}

    @staticmethod
    def _nncf(job: Int8Job, recipe: dict, out: Path, *, ignored: tuple[str, ...] = ()) -> Candidate:
        """One NNCF run with a recipe's settings; `ignored` (node names) stay float (NNCF's ignored_scope)."""
        from edgecnn.backends.openvino.quantize import quantize_openvino_int8

        job.stage(f"quantizing to INT8 with NNCF ({recipe['preset']} preset"
                  + (f", {len(ignored)} layer(s) in its ignored scope)" if ignored else ")"))
        q = quantize_openvino_int8(job.fp32_path, out, job.calibration, preset=recipe["preset"],
                                   reduce_range=recipe["reduce_range"], ignored_nodes=tuple(ignored))
        return Candidate(q.xml_path, {"preset": q.preset, "fake_quantize_nodes": q.fake_quantize_nodes})
