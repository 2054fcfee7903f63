"""Calibration and golden samples for an export: from the checkpoint's own data, --calib-data, or
(only when asked for by name) noise."""

from __future__ import annotations

import numpy as np

from edgecnn.build_context import ExportRequest, ModelData
from edgecnn.errors import BadInputError

NOISE_DATA = "noise"  # --calib-data noise: random images, only when asked for by name
NOISE_GOLDEN_SIZE = 64


def model_data(loaded, preprocess, request: ExportRequest, *, needs_calibration: bool) -> ModelData:
    """Calibration and golden samples for the model, from the checkpoint's data or --calib-data."""
    from edgecnn.data import calibration_images, load_data, preprocessed_split

    warnings: list[str] = []
    checkpoint = loaded.checkpoint or {}
    spec = request.calib_data or checkpoint.get("data")
    if spec == NOISE_DATA:
        rng = np.random.default_rng(request.seed)
        calibration = rng.standard_normal((request.calib_size, *preprocess.input_shape)).astype(np.float32)
        warnings.append("calibrating on random noise (--calib-data noise): the int8 accuracy it gives means nothing")
        golden, labels, source, meaningful = _noise_golden(preprocess, request.seed)
        return ModelData(calibration, "noise", golden, labels, source, meaningful, warnings)
    if spec is None:
        if needs_calibration:
            raise BadInputError(
                "int8 needs real calibration images and this model has no training data recorded: "
                "pass --calib-data SPEC (e.g. digits, imagefolder:DIR), export a checkpoint trained "
                "with edgecnn train, or choose --precision fp32"
            )
        warnings.append("no data given: the golden set is random noise, so verify on the device checks "
                        "agreement with PyTorch only (pass --calib-data SPEC for real samples)")
        golden, labels, source, meaningful = _noise_golden(preprocess, request.seed)
        return ModelData(None, None, golden, labels, source, meaningful, warnings)

    # The checkpoint's own split seed keeps the golden set out of its training data.
    same_data = spec == checkpoint.get("data")
    seed = checkpoint.get("seed", request.seed) if same_data else request.seed
    data_root = request.data_root or (checkpoint.get("data_root") if same_data else None)
    dataset = load_data(spec, data_root=data_root, seed=seed if seed is not None else 0)
    calibration = None
    if needs_calibration:
        calibration, _ = calibration_images(dataset, preprocess, n=request.calib_size, seed=request.seed)
    golden, labels = preprocessed_split(dataset, "test", preprocess, limit=request.golden_size, seed=request.seed)
    meaningful = same_data and loaded.accuracy_meaningful and \
        tuple(dataset.class_names) == tuple(loaded.class_names)
    if not meaningful:
        labels = np.full(len(golden), -1, dtype=np.int64)
        if not same_data:
            warnings.append(f"{spec} is not the data {loaded.name} was trained on: the golden set checks "
                            "agreement with PyTorch, not accuracy")
    source = f"{spec} test split ({len(golden)} class-balanced samples, seed {request.seed})"
    return ModelData(calibration, f"{spec} train split" if calibration is not None else None,
                     golden, labels, source, meaningful, warnings)


def _noise_golden(preprocess, seed: int):
    rng = np.random.default_rng(seed + 1)
    inputs = rng.standard_normal((NOISE_GOLDEN_SIZE, *preprocess.input_shape)).astype(np.float32)
    return inputs, np.full(NOISE_GOLDEN_SIZE, -1, dtype=np.int64), "random noise (no data given)", False
