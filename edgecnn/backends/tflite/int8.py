"""TFLite's INT8 method: full-integer files converted by litert-torch (PT2E, per-channel weights,
conv+ReLU6 fused); layers kept in float by selective quantization (their PyTorch modules get no PT2E
annotation, so litert-torch leaves them float). Each candidate is a new conversion, so on a large model
the budget allows only a few. The weight-only scheme is a plain conversion in the build step.

Layers are named by PyTorch module path: litert-torch names tensors after module types, so the call
paths are rebuilt from the model (`layer_names` in the entry, what explain shows without the model).
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.quantize import Candidate, Int8Job, Int8Method, Layer, Recipe

FULL_INTEGER = "full-integer"


class TFLiteInt8(Int8Method):
    runtime = "tflite"
    format = "tflite"
    fp32_artifact = "tflite/model.fp32.tflite"
    artifact = "tflite/model.int8.tflite"

    def applies(self, job: Int8Job) -> bool:
        return job.options.get("tflite_int8_scheme", FULL_INTEGER) == FULL_INTEGER

    def recipes(self, job: Int8Job) -> list[Recipe]:
        return [Recipe(label="litert-torch PT2E full-integer, per-channel weights, conv+ReLU6 fused",
                       settings={"per_channel": True, "activation_observer": "histogram", "conv_relu6_fused": True})]

    def write(self, job: Int8Job, recipe: Recipe, folder: Path) -> Candidate:
        job.stage("converting to TFLite with litert-torch (int8)")
        return self._convert(job, folder / Path(self.artifact).name)

    def layers(self, job: Int8Job, full: Path) -> list[Layer]:
        from edgecnn.backends.tflite.names import module_layers
        from edgecnn.backends.tflite.sensitivity import tflite_layers

        model = job.torch_model()
        return module_layers(model, tflite_layers(full, job.fp32_path, job.golden_inputs))

    def keep_float(self, job: Int8Job, full: Candidate, nodes: tuple[str, ...], out: Path) -> Candidate:
        job.stage(f"converting to TFLite with {len(nodes)} module(s) in float")
        return self._convert(job, out, float_modules=nodes)

    def entry(self, job: Int8Job, kept: Path, chosen: dict, record: dict) -> dict:
        """The kept file's own ops and quantization (a kept mix is not the full-int8 file), and its layer names."""
        from edgecnn.backends.tflite.names import layer_names
        from edgecnn.backends.tflite.sensitivity import tflite_layers

        names = layer_names(job.torch_model(), tflite_layers(kept, job.fp32_path, job.golden_inputs[:0]))
        return {**chosen, "layer_names": names}

    @staticmethod
    def _convert(job: Int8Job, path: Path, *, float_modules: tuple[str, ...] = ()) -> Candidate:
        from edgecnn.backends.tflite.convert import export_tflite

        result = export_tflite(job.torch_model(), job.input_shape, path, precision="int8",
                               calibration=job.calibration, float_modules=tuple(float_modules),
                               int8_scheme=FULL_INTEGER)
        if not float_modules:
            job.warnings.extend(w for w in result.warnings if w not in job.warnings)
        return Candidate(result.path, {"batch": result.batch_size, "quantization": result.quantization,
                                       "ops": result.op_counts})
