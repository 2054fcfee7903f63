"""Image folders: one sub-folder per class, or train/ val/ test/ folders of class sub-folders."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.data.dataset import Dataset, Split
from edgecnn.data.splits import VAL_FRACTION, pool_dataset, stratified_split
from edgecnn.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

def load_image_folder(folder: str | Path, *, seed: int = 0, spec: str | None = None) -> Dataset:
    """One sub-folder per class (or train/ val/ test/ folders, each with one sub-folder per class)."""
    folder = Path(folder)
    spec = spec or f"imagefolder:{folder}"
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_folders = {SPLIT_FOLDER_NAMES[p.name.lower()]: p for p in subfolders
                     if p.name.lower() in SPLIT_FOLDER_NAMES}
    if "train" in split_folders and len(split_folders) == len(subfolders) and len(split_folders) >= 2:
        return _load_presplit_folder(folder, split_folders, seed, spec)
    class_names, files, labels = _scan_class_folders(folder)
    images = _read_images(files)
    return pool_dataset(spec, Split(images, np.asarray(labels, dtype=np.int64)), class_names, seed=seed, hflip_ok=True)


def _load_presplit_folder(folder: Path, split_folders: dict[str, Path], seed: int, spec: str) -> Dataset:
    class_names, train_files, train_labels = _scan_class_folders(split_folders["train"])
    splits = {}
    for name in ("val", "test"):
        if name in split_folders:
            names, files, labels = _scan_class_folders(split_folders[name], class_names)
            splits[name] = (files, labels)
    all_files = train_files + [f for files, _ in splits.values() for f in files]
    images = _read_images(all_files)
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


def _scan_class_folders(folder: Path, class_names: Sequence[str] | None = None):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BadInputError(f"image folder {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    if class_names is not None:
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise BadInputError(f"{folder} has classes not in the training folder: {', '.join(unknown)}")
    names = list(class_names) if class_names is not None else classes
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
        labels.extend([names.index(name)] * len(class_files))
    return names, files, labels


def _read_images(files: Sequence[Path]) -> np.ndarray:
    """Decode image files to one uint8 array; mixed sizes are brought to the most common size."""
    try:
        from PIL import Image
    except ImportError:
        raise BadInputError("reading an image folder needs Pillow: pip install 'edgecnn[train]'") from None
    decoded = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                decoded.append(image.copy())
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
            raise BadInputError(f"cannot read image {path}: {exc}") from None
    grayscale = all(im.mode in ("1", "L", "I;16", "I", "F", "LA") for im in decoded)
    mode = "L" if grayscale else "RGB"
    sizes = [im.size for im in decoded]
    # The most common size wins (ties go to the larger); the others are resized to it with PIL's
    # bilinear filter. Recorded data stays uint8, so one PreprocessSpec still describes everything.
    common = max(set(sizes), key=lambda s: (sizes.count(s), s[0] * s[1]))
    arrays = []
    for image in decoded:
        image = image.convert(mode)
        if image.size != common:
            image = image.resize(common, Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    return np.stack(arrays)
