"""INT8 OpenVINO IR by NNCF post-training quantization of the OpenVINO model.

The OpenVINO model (converted from the exported ONNX, or read from an fp32 IR) is quantized,
not the torch module: NNCF's torch backend compiles a C++ extension at run time. NNCF's CPU
defaults are kept: per-channel symmetric int8 weights, per-tensor activations.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecnn.errors import BadInputError, require
from edgecnn.backends.openvino.convert import ov_op_counts, read_model, save_ir
from edgecnn.compare import Progress, check_samples

__all__ = ["PRESETS", "TARGET_DEVICES", "OpenVinoInt8Result", "quantize_openvino_int8"]

PRESETS = ("performance", "mixed")  # symmetric activations | asymmetric activations
TARGET_DEVICES = ("CPU", "ANY", "GPU", "NPU")
_EXTRA = "openvino"


@dataclass(frozen=True)
class OpenVinoInt8Result:
    """The INT8 IR that `quantize_openvino_int8` wrote."""

    xml_path: Path
    bin_path: Path
    source: Path
    preset: str
    target_device: str
    calibration_size: int  # images NNCF actually used (subset_size capped by the data)
    fake_quantize_nodes: int
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    quantize_s: float
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("xml_path", "bin_path", "source"):
            data[key] = str(data[key])
        return data


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs INFO lines and draws rich progress bars on the global console; the CLI owns
    the terminal, so both are muted for the call (our `progress` callback reports instead)."""
    loggers = [logging.getLogger(name) for name in ("nncf", "torch.utils.cpp_extension")]
    previous_levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    console = None
    try:
        import rich

        console = rich.get_console()
    except ImportError:  # pragma: no cover - rich is a core dependency
        pass
    previous_quiet = console.quiet if console is not None else None
    if console is not None:
        console.quiet = True
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous_levels):
            logger.setLevel(level)
        if console is not None:
            console.quiet = previous_quiet


def _check_choices(preset: str, target_device: str) -> tuple[str, str]:
    """The preset and target device, normalised; unknown ones refused."""
    preset = preset.lower()
    if preset not in PRESETS:
        raise BadInputError(f"unknown NNCF preset {preset!r}: choose one of {', '.join(PRESETS)}")
    target_device = target_device.upper()
    if target_device not in TARGET_DEVICES:
        raise BadInputError(
            f"unknown NNCF target device {target_device!r}: choose one of {', '.join(TARGET_DEVICES)}"
        )
    return preset, target_device


def _calibration_size(model, model_path, images: np.ndarray, subset_size: int | None) -> int:
    """Check the images fit the model's input; how many of them NNCF will use."""
    shape = model.input(0).get_partial_shape()
    expected = tuple(None if d.is_dynamic else d.get_length() for d in shape)
    if len(expected) != 4 or any(
        want is not None and want != got for want, got in zip(expected[1:], images.shape[1:])
    ):
        raise BadInputError(
            f"calibration data has shape (C, H, W) = {tuple(images.shape[1:])} but "
            f"{Path(model_path).name} takes {expected[1:]}: bring it to the model's input size "
            "and preprocessing"
        )
    size = len(images) if subset_size is None else min(int(subset_size), len(images))
    if size < 1:
        raise BadInputError(f"subset size must be at least 1, got {subset_size}")
    return size


def _dataset(nncf, images: np.ndarray, size: int, progress: Progress | None):
    """An nncf.Dataset over the first `size` images, reporting each one to `progress`."""
    seen = 0

    def one_image(index: int) -> np.ndarray:
        # One image per item: NNCF counts subset_size in items, and warns that larger
        # batches skew its per-sample statistics.
        nonlocal seen
        seen += 1
        if progress is not None:
            progress(min(seen, size), size)
        return images[index : index + 1]

    return nncf.Dataset(range(size), one_image)


def _run_nncf(nncf, model, dataset, *, preset: str, target_device: str, size: int,
              fast_bias_correction: bool, reduce_range: bool = True,
              ignored_nodes: tuple[str, ...] = (), advanced: dict | None = None) -> tuple[Any, float]:
    """nncf.quantize with edgecnn's settings, quietly; the quantized model and seconds taken."""
    started = time.perf_counter()
    # validate=True: a name the graph lacks is an error, so a wrong name cannot silently exclude nothing.
    extra = {"ignored_scope": nncf.IgnoredScope(names=list(ignored_nodes), validate=True)} if ignored_nodes else {}
    with _quiet_nncf():
        quantized = nncf.quantize(
            model,
            dataset,
            preset=getattr(nncf.QuantizationPreset, preset.upper()),
            target_device=getattr(nncf.TargetDevice, target_device),
            subset_size=size,
            fast_bias_correction=fast_bias_correction,
            # reduce_range: weights in 7 bits on every layer (NNCF's default fixes only the first):
            # x86 CPUs without VNNI (AVX2) sum u8*s8 pairs in int16 and saturate with 8-bit weights.
            # Measured on an AVX2-only EPYC, MobileNet v2 on digits: first-layer-only 95.9 % top-1 vs
            # 99.3 % fp32. A profile whose CPU has VNNI (cpu_vnni = true) keeps all 8 bits.
            advanced_parameters=nncf.AdvancedQuantizationParameters(
                overflow_fix=nncf.OverflowFix.ENABLE if reduce_range else nncf.OverflowFix.DISABLE,
                **(advanced or {})),
            **extra,
        )
    return quantized, time.perf_counter() - started


def quantize_openvino_int8(
    model_path: str | os.PathLike,
    xml_path: str | os.PathLike,
    calibration_batches: np.ndarray,
    *,
    preset: str = "performance",
    subset_size: int | None = None,
    target_device: str = "CPU",
    # Full bias correction: slower to calibrate, measurably better. MobileNet v2 on digits (with
    # the overflow fix below): fast 98.1 % top-1 (-1.1 pts), full 98.9 % (-0.4), fp32 99.3 %.
    fast_bias_correction: bool = False,
    reduce_range: bool = True,
    ignored_nodes: tuple[str, ...] = (),
    advanced: dict | None = None,
    progress: Progress | None = None,
    before_save: Callable[[Any], None] | None = None,
) -> OpenVinoInt8Result:
    """Quantize the ONNX or fp32 IR model at `model_path` to an INT8 IR at `xml_path` with NNCF.

    `calibration_batches` is a preprocessed float32 NCHW array; `subset_size` defaults to all
    of it. `preset="mixed"` uses asymmetric activations (better for non-ReLU activations).
    `reduce_range` stores 7-bit weights (for CPUs without VNNI); `ignored_nodes` (OpenVINO node names)
    stay in float (NNCF's ignored scope; a name the model lacks is an error). `advanced`: more
    AdvancedQuantizationParameters fields (e.g. SmoothQuant alphas), for measuring recipes. `before_save`
    may change the quantized openvino.Model in place before it is written (edgecnn.backends.openvino.pair_bound).
    """
    with _quiet_nncf():  # importing nncf probes torch's C++ extension setup and logs about CUDA
        nncf = require("nncf", _EXTRA, "OpenVINO INT8 quantization")
    preset, target_device = _check_choices(preset, target_device)
    model = read_model(model_path)
    images = check_samples(calibration_batches)
    size = _calibration_size(model, model_path, images, subset_size)

    ops_before = ov_op_counts(model)
    quantized, quantize_s = _run_nncf(
        nncf,
        model,
        _dataset(nncf, images, size, progress),
        preset=preset,
        target_device=target_device,
        size=size,
        fast_bias_correction=fast_bias_correction,
        reduce_range=reduce_range,
        ignored_nodes=tuple(ignored_nodes),
        advanced=advanced,
    )
    if before_save is not None:
        before_save(quantized)
    # Weights are int8 already; keeping the rest fp32 keeps the quantization scales exact.
    xml, bin_ = save_ir(quantized, Path(xml_path), compress_to_fp16=False)
    ops_after = ov_op_counts(quantized)
    return OpenVinoInt8Result(
        xml_path=xml,
        bin_path=bin_,
        source=Path(model_path),
        preset=preset,
        target_device=target_device,
        calibration_size=size,
        fake_quantize_nodes=ops_after.get("FakeQuantize", 0),
        ops_before=ops_before,
        ops_after=ops_after,
        quantize_s=quantize_s,
        bytes=xml.stat().st_size + bin_.stat().st_size,
    )
