"""`edgecnn explain` for OpenVINO IRs: SQNR per quantized layer and candidates with layers in float."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.backends.openvino.fallback import keep_in_float, ov_layers


def explainer(int8_path: str | Path, fp32_path: str | Path, inputs: np.ndarray):
    """(quantized layers with SQNR, how to write a candidate with layers in float)."""
    return ov_layers(int8_path, fp32_path, inputs), keep_in_float
