"""The samples verify runs: the bundle's golden set, or a --data test split checked to be the model's data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgecnn.errors import BadInputError


@dataclass
class Samples:
    """Preprocessed inputs, their labels and the reference logits on them."""

    inputs: np.ndarray
    labels: np.ndarray | None  # None when they mean nothing (a noise golden set, other data)
    source: str  # "golden" or "data:SPEC"
    golden_logits: np.ndarray | None = None  # when the inputs are the golden set
    reference_logits: np.ndarray | None = None
    reference_source: str | None = None
    reference_label: str | None = None  # for people: "PyTorch fp32 re-run live", "golden logits (...)"
    golden_reference: str = "pytorch fp32"  # what the golden logits were computed with (manifest golden.reference)
    notes: list[str] = field(default_factory=list)


def golden_samples(golden: Mapping[str, np.ndarray], limit: int | None, *,
                   labels_meaningful: bool = True) -> Samples:
    """The golden set as Samples (at most `limit`); BadInputError when it is malformed."""
    inputs, labels, logits = (np.asarray(golden[k]) for k in ("inputs", "labels", "logits"))
    if inputs.ndim != 4 or logits.ndim != 2 or not (len(inputs) == len(labels) == len(logits)) or len(inputs) == 0:
        raise BadInputError(
            f"the golden set is malformed (inputs {list(inputs.shape)}, labels {list(labels.shape)}, "
            f"logits {list(logits.shape)}): re-export the bundle"
        )
    if limit is not None:
        inputs, labels, logits = inputs[:limit], labels[:limit], logits[:limit]
    # The exporter stores -1 where a label means nothing (noise, or data the model was not trained on).
    meaningful = labels_meaningful and bool(np.all(labels >= 0))
    return Samples(inputs=np.ascontiguousarray(inputs, dtype=np.float32),
                   labels=labels.astype(np.int64) if meaningful else None,
                   source="golden", golden_logits=logits.astype(np.float32))


def read_golden_file(path: Path) -> dict[str, np.ndarray]:
    """A bare golden .npz (--reference golden.npz), checked to hold every golden key."""
    from edgecnn.bundle import GOLDEN_KEYS

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in GOLDEN_KEYS if k not in data.files]
            if missing:
                raise BadInputError(f"{path} lacks {', '.join(missing)}: not an edgecnn golden set")
            return {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path} as a golden set: {exc}") from None


def golden_labels_meaningful(bundle) -> bool:
    """False when the exporter recorded that the golden labels mean nothing (noise inputs)."""
    golden = bundle.manifest.get("golden")
    return not isinstance(golden, dict) or golden.get("labels_meaningful", True) is not False


def manifest_seed(manifest: Mapping[str, Any]) -> int:
    """The split seed the model was trained with (so --data's test split is really held out)."""
    model = manifest.get("model") or {}
    for holder in (model, model.get("metrics") or {}, manifest.get("data") or {}):
        value = holder.get("seed") if isinstance(holder, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def class_count_of(bundle, golden: Mapping[str, np.ndarray] | None = None) -> int | None:
    """How many classes the bundle's model predicts, from whatever the manifest records."""
    if bundle.class_names:
        return len(bundle.class_names)
    model = bundle.manifest.get("model") or {}
    if isinstance(model.get("num_classes"), int):
        return int(model["num_classes"])
    if golden is not None:
        return int(np.asarray(golden["logits"]).shape[1])
    return None


def data_mismatches(preprocess, dataset, num_classes: int | None) -> list[str]:
    """Why `dataset` (fed through `preprocess`) is not the data the model was exported for; [] when it is.

    Checked: class count; class names; image size (the preprocessing never shrinks the training
    data, so a bundle input smaller than the data's images means other data); and, for a model
    normalised with its training data's statistics, those statistics measured on this data.
    """
    problems = []
    if num_classes is not None and dataset.num_classes != num_classes:
        problems.append(f"class count: the model predicts {num_classes} classes, the data has {dataset.num_classes}")
    names = tuple(getattr(preprocess, "class_names", ()) or ())
    if names and len(names) == dataset.num_classes and tuple(dataset.class_names) != names:
        shown = lambda values: ", ".join(list(values)[:4]) + (", ..." if len(values) > 4 else "")  # noqa: E731
        problems.append(f"class names: the model's are [{shown(names)}], the data's [{shown(dataset.class_names)}]")
    if preprocess is None:
        return problems
    # Photos are resized and centre-cropped as the model records, so their own size says nothing.
    cropped = getattr(preprocess, "resize_shorter", None) is not None and hasattr(dataset.train.images, "decode_for")
    if not cropped and dataset.image_size > preprocess.size:
        problems.append(
            f"size: the model takes {preprocess.size}x{preprocess.size}, the data's images are "
            f"{dataset.image_size} px (training never shrinks its data)"
        )
    if preprocess.normalization == "dataset" and len(dataset.train):
        from edgecnn.data import dataset_statistics

        mean, std = dataset_statistics(dataset.train.images, preprocess)
        # Same data, another copy or seed: equal to ~1e-3. Other data: off by tenths.
        if max(abs(a - b) for a, b in zip(mean, preprocess.mean)) > 0.02 or \
                max(abs(a - b) for a, b in zip(std, preprocess.std)) > 0.02:
            problems.append(
                f"mean/std: the model was normalised with mean {_fmt_list(preprocess.mean)} std "
                f"{_fmt_list(preprocess.std)} ({preprocess.channels} channel(s)), this data gives mean "
                f"{_fmt_list(mean)} std {_fmt_list(std)}"
            )
    return problems


def _fmt_list(values) -> str:
    return "[" + ", ".join(f"{float(v):.3f}" for v in values) + "]"


def load_data_samples(data: str, preprocess, *, num_classes: int | None, data_root=None, seed: int = 0,
                      limit: int | None = None) -> Samples:
    """A data SPEC, preprocessed as the model expects; BadInputError on a mismatch.

    The model's own training data gives its test split; other data (photos for an ImageNet model) is
    used whole, its class folders looked up in the model's class list.
    """
    from edgecnn.data import load_data, preprocessed_sample, preprocessed_split, whole_pool

    if preprocess is None:
        raise BadInputError("--data needs the model's preprocessing, and the bundle records none: re-export it")
    names = tuple(getattr(preprocess, "class_names", ()) or ())
    dataset = load_data(data, data_root=data_root, seed=seed, class_names=names or None)
    problems = data_mismatches(preprocess, dataset, num_classes)
    if problems:
        raise BadInputError(f"--data {data} does not match the model's preprocessing: {'; '.join(problems)}")
    if getattr(preprocess, "data", None) == data:
        inputs, labels = preprocessed_split(dataset, "test", preprocess, limit=limit, seed=seed)
    else:
        inputs, labels = preprocessed_sample(whole_pool(dataset), preprocess, limit=limit, seed=seed)
    if len(labels) == 0:
        raise BadInputError(f"--data {data} has an empty test split")
    # Images given without labels (the Python API's edgecnn.data.Images) carry -1: agreement only.
    return Samples(inputs=inputs, labels=labels if np.all(labels >= 0) else None, source=f"data:{data}")


def golden_logits_for(inputs: np.ndarray, golden: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The golden logits of each input when every input is a golden-set image (--data the golden data), else None.

    Matched on the model input itself: equal up to a pixel level or two, so another JPEG decoder on the
    device still finds its photos (a coarse signature finds the candidate, the whole image confirms it).
    """
    golden_inputs = np.asarray(golden["inputs"], dtype=np.float32)
    if len(inputs) == 0 or golden_inputs.shape[1:] != inputs.shape[1:]:
        return None
    coarse = lambda x: x[:, :, ::8, ::8].reshape(len(x), -1)  # noqa: E731
    golden_coarse, chosen = coarse(golden_inputs), []
    for start in range(0, len(inputs), 64):
        batch = inputs[start : start + 64]
        distance = np.abs(coarse(batch)[:, None, :] - golden_coarse[None]).mean(axis=2)
        for row, index in zip(batch, distance.argmin(axis=1)):
            if float(np.abs(row - golden_inputs[index]).mean()) > _SAME_IMAGE:
                return None
            chosen.append(int(index))
    return np.asarray(golden["logits"], dtype=np.float32)[chosen]


# Mean |difference| of two model inputs of one photo decoded twice (model-input units: ~0.02 a pixel level).
_SAME_IMAGE = 0.03

__all__ = ["Samples", "class_count_of", "data_mismatches", "golden_labels_meaningful", "golden_logits_for",
           "golden_samples",
           "load_data_samples", "manifest_seed", "read_golden_file"]
