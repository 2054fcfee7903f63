"""Datasets: a data SPEC becomes raw uint8 train/val/test splits, class names and a preprocessing spec.

SPECs (see DESIGN.md): `digits` (scikit-learn's bundled 8x8 digits, offline), `mnist`,
`fashion-mnist`, `cifar10` (torchvision download into the data root), `idx:DIR` (MNIST-format IDX
pairs, gzipped or not), `imagefolder:DIR` (one sub-folder per class).

Images stay raw (uint8, (N,H,W) or (N,H,W,C)) so that one `PreprocessSpec.apply` — the same code
on the host and on a device — turns them into model input. Splits are deterministic for a seed.
torch is not imported here: only the torchvision downloads need it.

Modules: dataset (Split, Dataset, data root), splits (stratified splits, class-balanced samples),
sources (load_data and the built-in sets), idx, imagefolder, photos (image files decoded on demand:
resize-shorter + centre crop), model_input (preprocess_for,
preprocessed splits, calibration sets), specs (SPECs as objects for the Python API: ImageFolder, Images ...).
"""

from edgecnn.data.dataset import DATA_SPECS, Dataset, Split, default_data_root, offline_requested
from edgecnn.data.splits import POOL_FRACTIONS, VAL_FRACTION, class_balanced_sample, stratified_split, whole_pool
from edgecnn.data.idx import find_idx_pair, load_idx_folder, read_idx
from edgecnn.data.imagefolder import IMAGE_SUFFIXES, load_image_folder
from edgecnn.data.photos import ImageFiles, center_crop
from edgecnn.data.sources import load_data
from edgecnn.data.specs import Cifar10, DataSpec, Digits, FashionMnist, Idx, ImageFolder, Images, Mnist, as_data
from edgecnn.data.model_input import (
    calibration_images,
    dataset_statistics,
    preprocess_for,
    preprocessed_sample,
    preprocessed_split,
    published_normalization,
)

__all__ = [
    "Cifar10",
    "DataSpec",
    "Digits",
    "FashionMnist",
    "Idx",
    "ImageFolder",
    "Images",
    "Mnist",
    "as_data",
    "DATA_SPECS",
    "Dataset",
    "IMAGE_SUFFIXES",
    "ImageFiles",
    "POOL_FRACTIONS",
    "Split",
    "VAL_FRACTION",
    "calibration_images",
    "center_crop",
    "class_balanced_sample",
    "dataset_statistics",
    "default_data_root",
    "find_idx_pair",
    "load_data",
    "load_idx_folder",
    "load_image_folder",
    "offline_requested",
    "preprocess_for",
    "preprocessed_sample",
    "preprocessed_split",
    "published_normalization",
    "read_idx",
    "stratified_split",
    "whole_pool",
]
