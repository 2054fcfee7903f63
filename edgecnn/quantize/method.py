"""What a backend declares about INT8 (`Int8Method`), and the plain data the pipeline hands it (`Int8Job`).

A runtime's INT8 method knows only its own files: how to write a full-int8 candidate for each of its
recipes, how to keep named layers in float, how to quantize again with layers excluded, which layers a
file quantized and their SQNR, and what the manifest entry says about a file. It never scores, times
or decides: `edgecnn.quantize.search_int8` does, through a `Measure` the pipeline hands it (the Runner
path and bench's timing), and the pipeline records the decision and adds the artifact. Each method is
registered as `Backend.int8` ("module:Class") and instantiated once per export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from edgecnn.quantize.search import Layer
from edgecnn.stages import Stage, quiet


class RecipeUnavailable(Exception):
    """Raised by `Int8Method.write` for a recipe that cannot be written for this model here (the reason is said
    to the user; the search goes on without it)."""


@dataclass
class Int8Job:
    """One export's INT8 inputs: plain data, no callbacks into the build."""

    fp32_path: Path  # the fp32 artifact (in the bundle being written) the int8 file derives from
    calibration: np.ndarray  # NCHW float32 calibration images
    golden_inputs: np.ndarray  # the golden set (SQNR and layer names are measured on a few of them)
    scratch: Path  # a folder of its own for candidate files
    input_shape: tuple[int, ...]  # (C, H, W)
    profile: Any  # the DeviceProfile (reduce_range, weight_bits_note, settings)
    calib_method: str = "minmax"
    options: dict[str, Any] = field(default_factory=dict)  # request options a method reads (tflite_int8_scheme)
    # The model as a torch module, converted on the first call (TFLite converts each candidate from it).
    torch_model: Callable[[], Any] | None = None
    stage: Stage = quiet
    warnings: list[str] = field(default_factory=list)  # said to the user with the export
    # The fp32 artifact was exported from `torch_model` by export_onnx, so a copy with tuned weights exports to
    # the same graph and node names (the distilled recipe needs that; an ONNX source's graph is its own).
    distillable: bool = False
    search_seconds_left: float | None = None  # set by the search before each recipe is written
    # Distilled sources by grid, shared by the copies the second search makes (dataclasses.replace keeps this
    # dict): one distillation per export, not one per search.
    distilled: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """One way to quantize: its label and what it sets (a method's `write` reads the settings)."""

    label: str
    settings: dict[str, Any]


@dataclass
class Candidate:
    """A candidate file and what the manifest entry records about this very file (ops, quantization, ...)."""

    path: Path
    entry: dict[str, Any] = field(default_factory=dict)


class Measure(Protocol):
    """How candidates are scored and timed: through the runtime's Runner, as on the device."""

    def logits(self, runtime: str, path: Path, inputs: np.ndarray, *, precision: str,
               options: dict | None = None) -> np.ndarray: ...

    def p50_ms(self, runtime: str, path: Path, sample: np.ndarray, *, precision: str) -> float: ...

    def side_by_side(self, runtime: str, candidate: Path, fp32: Path, sample: np.ndarray) -> dict: ...


class Int8Method:
    """One runtime's INT8 knowledge; a backend subclasses it and names the class in `Backend.int8`."""

    runtime = ""  # the runtime whose Runner scores (and times) the candidates
    format = ""  # the manifest format of the kept artifact
    fp32_artifact = ""  # bundle path of the fp32 file the int8 file derives from
    artifact = ""  # bundle path the kept int8 file is copied to
    companions: tuple[str, ...] = ()  # suffixes of files that travel with it (OpenVINO's ".bin")
    timed = True  # False where this host's runtime says nothing about the device's speed (TensorRT)
    untimed_note = ""  # added to the decision's note when not timed
    no_fallback_reason = ""  # set where this runtime cannot keep layers in float
    requantizes = False  # True: `requantize` quantizes again with the chosen layers excluded
    # The runner options that score a file in the device's exact int8 arithmetic where this host's kernels
    # differ (recorded in the manifest, so verify on such a host checks the device's arithmetic too).
    emulation_options: dict[str, Any] = {}

    def scoring(self, job: Int8Job, recipe: dict) -> dict[str, Any]:
        """How candidates of `recipe` are scored: {"options": runner options, "arithmetic": said in the record,
        "emulate_without_vnni": whether a host whose int8 kernels saturate must emulate this file to check it}.

        The default runs them as the device will, through this host's runtime; a method whose host kernels
        compute differently from the device's (ONNX Runtime's int8 on AVX2) says how to score instead.
        """
        return {"options": {}, "arithmetic": f"this host's {self.runtime} kernels"}

    def applies(self, job: Int8Job) -> bool:
        """Whether the int8 artifact goes through the search (TFLite's weight-only scheme does not)."""
        return True

    def recipes(self, job: Int8Job) -> list[Recipe]:
        raise NotImplementedError

    def write(self, job: Int8Job, recipe: Recipe, folder: Path) -> Candidate:
        """The full-int8 file of one recipe, written in `folder`."""
        raise NotImplementedError

    def layers(self, job: Int8Job, full: Path) -> list[Layer]:
        """The quantized layers of a full-int8 file, SQNR filled where measured."""
        return []

    def keep_float(self, job: Int8Job, full: Candidate, nodes: tuple[str, ...], out: Path) -> Candidate:
        """A candidate with `nodes` in float, written at `out`."""
        raise NotImplementedError(self.no_fallback_reason or "this runtime cannot keep layers in float")

    def requantize(self, job: Int8Job, recipe: dict, nodes: tuple[str, ...], out: Path) -> Candidate:
        """The chosen mix quantized again by the library itself, `nodes` excluded (when `requantizes`)."""
        raise NotImplementedError

    def calibration_record(self, job: Int8Job, recipe: dict, chosen: dict) -> dict | None:
        """The manifest's calibration details for this runtime (`chosen`: the chosen candidate's entry)."""
        return None

    def entry(self, job: Int8Job, kept: Path, chosen: dict, record: dict) -> dict[str, Any]:
        """The manifest entry's extras for the kept file (`chosen`: its candidate entry; `record`: the
        int8 decision record, which a method may annotate)."""
        return dict(chosen)
