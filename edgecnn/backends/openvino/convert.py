"""ONNX -> OpenVINO IR (`.xml` + `.bin`), fp32 or fp16.

The IR is converted from the exported ONNX file, not from the torch module, so every runtime
deploys the same graph (BatchNorm already folded, already slimmed).

Precision note: on CPUs with AVX-512 bf16 / AMX, OpenVINO's CPU plugin *executes* in bf16 by
default whatever the IR stores. The Runner (which export's parity check, bench and verify share)
therefore sets `INFERENCE_PRECISION_HINT=f32` for fp32 and int8 IRs, and leaves an fp16 IR to the
plugin's own choice.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInputError, require

__all__ = [
    "PRECISIONS",
    "OpenVinoExportResult",
    "export_openvino",
    "ov_op_counts",
    "read_model",
    "save_ir",
]

PRECISIONS = ("fp32", "fp16")
_EXTRA = "openvino"


@dataclass(frozen=True)
class OpenVinoExportResult:
    """The IR that `export_openvino` wrote."""

    xml_path: Path
    bin_path: Path
    source: Path
    precision: str  # storage precision of the weights: fp32 or fp16
    ops: dict[str, int]  # OpenVINO op type -> count (Parameter/Result/Constant excluded)
    convert_s: float
    bytes: int  # xml + bin

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("xml_path", "bin_path", "source"):
            data[key] = str(data[key])
        return data


def read_model(path: str | os.PathLike):
    """An `openvino.Model` from an ONNX file or an IR `.xml`."""
    ov = require("openvino", _EXTRA, "OpenVINO conversion")
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"model file not found: {path}")
    if path.suffix.lower() == ".xml":
        return ov.Core().read_model(str(path))
    if path.suffix.lower() == ".onnx":
        return ov.convert_model(str(path))
    raise BadInputError(f"expected an .onnx or an OpenVINO .xml file, got {path.name}")


def ov_op_counts(model) -> dict[str, int]:
    """Op type -> count of an `openvino.Model`, without the Parameter/Result/Constant plumbing."""
    skip = {"Parameter", "Result", "Constant"}
    counts = Counter(op.get_type_name() for op in model.get_ordered_ops())
    return dict(
        sorted(((k, v) for k, v in counts.items() if k not in skip), key=lambda kv: (-kv[1], kv[0]))
    )


def save_ir(model, xml_path: Path, *, compress_to_fp16: bool) -> tuple[Path, Path]:
    """Save `model` as IR atomically: both files are written under temp names, then renamed."""
    ov = require("openvino", _EXTRA, "saving OpenVINO IR")
    xml_path = Path(xml_path)
    if xml_path.suffix.lower() != ".xml":
        raise BadInputError(f"OpenVINO IR path must end in .xml, got {xml_path.name}")
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    bin_path = xml_path.with_suffix(".bin")
    # The .xml names its .bin by stem, so the temp pair shares a stem and the rename keeps it.
    tmp_xml = xml_path.with_name(f".{xml_path.stem}.{os.getpid()}.tmp.xml")
    tmp_bin = tmp_xml.with_suffix(".bin")
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        os.replace(tmp_bin, bin_path)
        os.replace(tmp_xml, xml_path)
    finally:
        tmp_xml.unlink(missing_ok=True)
        tmp_bin.unlink(missing_ok=True)
    return xml_path, bin_path


def export_openvino(
    onnx_path: str | os.PathLike,
    xml_path: str | os.PathLike,
    *,
    precision: str = "fp32",
) -> OpenVinoExportResult:
    """Convert the ONNX model at `onnx_path` to OpenVINO IR at `xml_path` (+ `.bin`)."""
    precision = precision.lower()
    if precision not in PRECISIONS:
        raise BadInputError(
            f"OpenVINO IR precision {precision!r} is not one of {', '.join(PRECISIONS)} "
            "(int8 goes through edgecnn.backends.openvino.quantize)"
        )
    started = time.perf_counter()
    model = read_model(onnx_path)
    xml, bin_ = save_ir(model, Path(xml_path), compress_to_fp16=precision == "fp16")
    convert_s = time.perf_counter() - started
    return OpenVinoExportResult(
        xml_path=xml,
        bin_path=bin_,
        source=Path(onnx_path),
        precision=precision,
        ops=ov_op_counts(model),
        convert_s=convert_s,
        bytes=xml.stat().st_size + bin_.stat().st_size,
    )
