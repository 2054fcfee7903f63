"""Image folders: one sub-folder per class, or train/ val/ test/ folders of class sub-folders.

The images stay files (`ImageFiles`): nothing is decoded until a sample of them is preprocessed. With
a model's class list, folder names are looked up in it (class index = position in the list), so a
folder of 300 ImageNet synsets gets the labels a 1,000-class model predicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.data.dataset import Dataset, Split
from edgecnn.data.photos import ImageFiles
from edgecnn.data.splits import VAL_FRACTION, pool_dataset, stratified_split
from edgecnn.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def load_image_folder(folder: str | Path, *, seed: int = 0, spec: str | None = None,
                      class_names: Sequence[str] | None = None) -> Dataset:
    """One sub-folder per class (or train/ val/ test/ folders, each with one sub-folder per class).

    `class_names`: the model's class list; folders map to their position in it (they may be a subset;
    one not in it is BadInputError naming it). A folder set sharing no name with the list is other
    data: it keeps its own sorted names, so the caller's checks say how it differs.
    """
    folder = Path(folder)
    spec = spec or f"imagefolder:{folder}"
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_folders = {SPLIT_FOLDER_NAMES[p.name.lower()]: p for p in subfolders
                     if p.name.lower() in SPLIT_FOLDER_NAMES}
    presplit = "train" in split_folders and len(split_folders) == len(subfolders) and len(split_folders) >= 2
    scanned = split_folders["train"] if presplit else folder
    model_classes = _model_classes(scanned, class_names)
    if presplit:
        return _load_presplit_folder(split_folders, seed, spec, model_classes)
    class_names, files, labels = _scan_class_folders(folder, model_classes=model_classes)
    images = ImageFiles(files)
    return pool_dataset(spec, Split(images, np.asarray(labels, dtype=np.int64)), class_names, seed=seed, hflip_ok=True)


def _model_classes(folder: Path, class_names: Sequence[str] | None) -> tuple[str, ...] | None:
    if not class_names:
        return None
    present = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return tuple(class_names) if present & set(class_names) else None


def _load_presplit_folder(split_folders: dict[str, Path], seed: int, spec: str,
                          model_classes: tuple[str, ...] | None) -> Dataset:
    class_names, train_files, train_labels = _scan_class_folders(split_folders["train"], model_classes=model_classes)
    splits = {}
    for name in ("val", "test"):
        if name in split_folders:
            names, files, labels = _scan_class_folders(split_folders[name], class_names,
                                                       model_classes=model_classes)
            splits[name] = (files, labels)
    all_files = train_files + [f for files, _ in splits.values() for f in files]
    # One sequence over every split's files, so whole-image decoding sizes them all alike.
    images = ImageFiles(all_files)
    train_images = images[: len(train_files)]
    train_labels = np.asarray(train_labels, dtype=np.int64)
    offset = len(train_files)
    arrays = {}
    for name, (files, labels) in splits.items():
        arrays[name] = Split(images[offset : offset + len(files)], np.asarray(labels, dtype=np.int64))
        offset += len(files)
    if "val" not in arrays:
        train_idx, val_idx = stratified_split(train_labels, (1.0 - VAL_FRACTION, VAL_FRACTION), seed)
        arrays["val"] = Split(train_images[val_idx], train_labels[val_idx])
        train_images, train_labels = train_images[train_idx], train_labels[train_idx]
    if "test" not in arrays:
        # No test folder: the validation folder is split in two, so test stays unseen.
        val = arrays["val"]
        val_idx, test_idx = stratified_split(val.labels, (0.5, 0.5), seed)
        arrays["val"], arrays["test"] = val.subset(val_idx), val.subset(test_idx)
    return Dataset(spec=spec, class_names=tuple(class_names), seed=seed, hflip_ok=True,
                   train=Split(train_images, train_labels), val=arrays["val"], test=arrays["test"])


def _scan_class_folders(folder: Path, class_names: Sequence[str] | None = None, *,
                        model_classes: Sequence[str] | None = None):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BadInputError(f"image folder {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    if model_classes is not None:
        known = set(model_classes)
        unknown = [name for name in classes if name not in known]
        if unknown:
            raise BadInputError(f"class folder {folder / unknown[0]} is not in the model's class list "
                                f"({len(model_classes)} classes, e.g. {model_classes[0]}): rename or remove it")
    elif class_names is not None:
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise BadInputError(f"{folder} has classes not in the training folder: {', '.join(unknown)}")
    names = list(model_classes or class_names or classes)
    index_of = {name: i for i, name in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    for name in classes:
        class_files = sorted(
            p for p in (folder / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not class_files and class_names is None:
            raise BadInputError(
                f"class folder {folder / name} has no images ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:4])}, ...)"
            )
        files.extend(class_files)
        labels.extend([index_of[name]] * len(class_files))
    return names, files, labels
