"""Calibration and golden samples for an export: from the checkpoint's own data, --calib-data and
--golden-data, or (only when asked for by name) noise.

The checkpoint's own data keeps its split: calibration from the training split, the golden set from
the test split. Data the model was not trained on has no split that matters: the golden set is a
class-balanced sample of all of it (of --golden-data when given) and, when calibration uses the same
data, calibration is drawn from the rest, so the two never share an image. Image folders are looked
up in the model's class list, and only the chosen images are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.build_context import ExportRequest, ModelData
from edgecnn.errors import BadInputError

NOISE_DATA = "noise"  # --calib-data noise: random images, only when asked for by name
NOISE_GOLDEN_SIZE = 64


@dataclass
class _Data:
    """One data SPEC loaded for the model, and whether it is the data the model was trained on."""

    spec: str
    dataset: object
    same_data: bool


def model_data(loaded, preprocess, request: ExportRequest, *, needs_calibration: bool) -> ModelData:
    """Calibration and golden samples for the model, from the checkpoint's data, --calib-data, --golden-data."""
    warnings: list[str] = []
    checkpoint = loaded.checkpoint or {}
    spec = request.calib_data or checkpoint.get("data")
    if request.golden_data == NOISE_DATA:
        raise BadInputError("--golden-data takes real data (a SPEC such as imagefolder:DIR), not noise")
    if spec == NOISE_DATA:
        rng = np.random.default_rng(request.seed)
        calibration = rng.standard_normal((request.calib_size, *preprocess.input_shape)).astype(np.float32)
        warnings.append("calibrating on random noise (--calib-data noise): the int8 accuracy it gives means nothing")
        golden = _golden(loaded, preprocess, request, _load(request.golden_data, loaded, request), warnings) \
            if request.golden_data else _noise_golden(preprocess, request.seed)
        return ModelData(calibration, "noise", *golden, warnings)
    if spec is None:
        if needs_calibration:
            raise BadInputError(
                "int8 needs real calibration images and this model has no training data recorded: "
                "pass --calib-data SPEC (e.g. digits, imagefolder:DIR), export a checkpoint trained "
                "with edgecnn train, or choose --precision fp32"
            )
        if request.golden_data:
            golden = _golden(loaded, preprocess, request, _load(request.golden_data, loaded, request), warnings)
            return ModelData(None, None, *golden, warnings)
        reference = "PyTorch" if not hasattr(loaded, "reference_label") else "the source model"
        warnings.append("no data given: the golden set is random noise, so verify on the device checks "
                        f"agreement with {reference} only (pass --calib-data SPEC for real samples)")
        return ModelData(None, None, *_noise_golden(preprocess, request.seed), warnings)

    calib = _load(spec, loaded, request)
    golden_data = _load(request.golden_data, loaded, request) if request.golden_data and \
        request.golden_data != spec else calib
    shared = golden_data is calib and not calib.same_data  # one pool for both: split it
    exclude = _pool_golden_indices(calib, request, needs_calibration) if shared else None
    calibration, calibration_source = None, None
    if needs_calibration:
        calibration, calibration_source = _calibration(calib, preprocess, request, exclude)
    golden = _golden(loaded, preprocess, request, golden_data, warnings, chosen=exclude)
    return ModelData(calibration, calibration_source, *golden, warnings)


def _load(spec: str, loaded, request: ExportRequest) -> _Data:
    from edgecnn.data import load_data

    checkpoint = loaded.checkpoint or {}
    # The checkpoint's own split seed keeps the golden set out of its training data.
    same_data = spec == checkpoint.get("data")
    seed = checkpoint.get("seed", request.seed) if same_data else request.seed
    data_root = request.data_root or (checkpoint.get("data_root") if same_data else None)
    dataset = load_data(spec, data_root=data_root, seed=seed if seed is not None else 0,
                        class_names=tuple(loaded.class_names or ()) or None)
    return _Data(spec, dataset, same_data)


def _pool_golden_indices(data: _Data, request: ExportRequest, needs_calibration: bool) -> np.ndarray:
    """The golden set's indices in the whole pool; with calibration from the same pool, leave it enough."""
    from edgecnn.data import class_balanced_sample, whole_pool

    labels = whole_pool(data.dataset).labels
    n = len(labels)
    room = max(n - request.calib_size, n // 2) if needs_calibration else n
    return np.sort(class_balanced_sample(labels, min(request.golden_size, room), request.seed))


def _calibration(data: _Data, preprocess, request: ExportRequest, exclude: np.ndarray | None):
    from edgecnn.data import calibration_images, class_balanced_sample, whole_pool

    if data.same_data:
        images, _ = calibration_images(data.dataset, preprocess, n=request.calib_size, seed=request.seed)
        return images, f"{data.spec} train split"
    pool = whole_pool(data.dataset)
    rest = np.arange(len(pool)) if exclude is None else np.setdiff1d(np.arange(len(pool)), exclude)
    if len(rest) == 0:
        raise BadInputError(f"--calib-data {data.spec} has no images left for calibration after the golden set: "
                            "pass --golden-data SPEC or a smaller --golden-size")
    chosen = rest[class_balanced_sample(pool.labels[rest], request.calib_size, request.seed)]
    apart = ", none of them in the golden set" if exclude is not None else ""
    return preprocess.apply(pool.images[chosen]), f"{data.spec} ({len(chosen)} class-balanced samples{apart})"


def _golden(loaded, preprocess, request: ExportRequest, data: _Data, warnings: list[str], *,
            chosen: np.ndarray | None = None):
    """(inputs, labels, source, labels meaningful) of the golden set from one data set."""
    from edgecnn.data import preprocessed_sample, preprocessed_split, whole_pool

    if data.same_data:
        golden, labels = preprocessed_split(data.dataset, "test", preprocess, limit=request.golden_size,
                                            seed=request.seed)
        source = f"{data.spec} test split ({len(golden)} class-balanced samples, seed {request.seed})"
    else:
        pool = whole_pool(data.dataset)
        part = pool.subset(chosen) if chosen is not None else pool
        golden, labels = preprocessed_sample(part, preprocess, limit=None if chosen is not None else
                                             request.golden_size, seed=request.seed)
        apart = ", none used for calibration" if chosen is not None else ""
        source = f"{data.spec} ({len(golden)} class-balanced samples{apart}, seed {request.seed})"
    if len(golden) == 0:
        raise BadInputError(f"{data.spec} gives no samples for the golden set")
    names = tuple(loaded.class_names or ())
    same_names = tuple(data.dataset.class_names) == names
    # Labels count when the data is the model's own, or its folders were found in a real class list.
    named = same_names and names != tuple(str(i) for i in range(len(names)))
    # Images given without labels (the Python API's edgecnn.data.Images) carry -1: agreement only.
    meaningful = loaded.accuracy_meaningful and same_names and (data.same_data or named) and bool(np.all(labels >= 0))
    if not meaningful:
        labels = np.full(len(golden), -1, dtype=np.int64)
        if not data.same_data:
            warnings.append(f"{data.spec} is not the data {loaded.name} was trained on: the golden set checks "
                            "agreement with PyTorch, not accuracy")
    return golden, labels, source, meaningful


def _noise_golden(preprocess, seed: int):
    rng = np.random.default_rng(seed + 1)
    inputs = rng.standard_normal((NOISE_GOLDEN_SIZE, *preprocess.input_shape)).astype(np.float32)
    return inputs, np.full(NOISE_GOLDEN_SIZE, -1, dtype=np.int64), "random noise (no data given)", False
