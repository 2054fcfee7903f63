"""Preprocessing a foreign model is stated, never guessed: --input-size, --resize, --mean, --std,
--channels, --classes, checked here and turned into the PreprocessSpec that export records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgecnn.errors import BadInputError
from edgecnn.preprocess import RESIZE_METHODS, PreprocessSpec

# The centre-crop ratio ImageNet classifiers are evaluated with: resize the shorter side to S / 0.875.
DEFAULT_CROP_PCT = 0.875
_FLAG_NAMES = ("--input-size", "--resize", "--mean", "--std", "--channels", "--classes")


@dataclass(frozen=True)
class StatedPreprocess:
    """What the user stated on the command line about a model's input (None: not stated)."""

    input_size: int | None = None
    resize: int | None = None
    mean: str | Sequence[float] | None = None  # "a,b,c" or numbers
    std: str | Sequence[float] | None = None
    channels: int | None = None
    classes: str | Path | None = None  # a class list file

    @classmethod
    def from_request(cls, request: Any) -> "StatedPreprocess":
        """The stated fields of an ExportRequest (or anything with those attributes)."""
        return cls(**{name: getattr(request, name, None) for name in cls.__dataclass_fields__})

    def given(self) -> list[str]:
        """The flags that were passed, as the user typed them."""
        return [flag for flag, name in zip(_FLAG_NAMES, self.__dataclass_fields__) if getattr(self, name) is not None]


@dataclass(frozen=True)
class Defaults:
    """What a library's config says about a model's input (timm's pretrained_cfg, torchvision's transforms)."""

    input_size: int | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int = 3
    notes: dict = field(default_factory=dict)  # recorded in the provenance (e.g. timm's interpolation)


def parse_values(flag: str, value: str | Sequence[float], channels: int) -> tuple[float, ...]:
    """'0.5,0.5,0.5' -> (0.5, 0.5, 0.5), exactly one finite value per channel."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise BadInputError(f"{flag} takes comma-separated numbers (e.g. 0.485,0.456,0.406), got {value!r}") from None
    else:
        values = tuple(float(v) for v in value)
    if len(values) != channels:
        raise BadInputError(f"{flag} has {len(values)} value(s) but the model takes {channels} channel(s): "
                            f"pass {channels} comma-separated numbers")
    if not all(math.isfinite(v) for v in values):
        raise BadInputError(f"{flag} values must be finite numbers, got {value!r}")
    if flag == "--std" and any(v <= 0 for v in values):
        raise BadInputError(f"--std values must be positive, got {value!r}")
    return values


def read_class_list(path: str | Path) -> tuple[str, ...]:
    """Class names from a file: one class a line, its first word the name, the line number its index."""
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadInputError(f"--classes: no such file {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"--classes: cannot read {file}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = []
    for number, line in enumerate(lines, start=1):
        words = line.split()
        if not words:
            raise BadInputError(f"--classes: line {number} of {file} is empty (the line number is the class index)")
        names.append(words[0])
    if not names:
        raise BadInputError(f"--classes: {file} lists no classes")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadInputError(f"--classes: {file} lists {duplicates[0]!r} more than once")
    return tuple(names)


def build_preprocess(stated: StatedPreprocess, defaults: Defaults, *, what: str,
                     need_normalization: bool = True) -> PreprocessSpec:
    """The PreprocessSpec of a foreign model: stated flags over the library's defaults; missing ones refused."""
    channels = stated.channels if stated.channels is not None else defaults.channels
    if channels not in (1, 3):
        raise BadInputError(f"--channels must be 1 or 3, got {channels}")
    size = stated.input_size if stated.input_size is not None else defaults.input_size
    mean = parse_values("--mean", stated.mean, channels) if stated.mean is not None else defaults.mean
    std = parse_values("--std", stated.std, channels) if stated.std is not None else defaults.std
    missing = [flag for flag, value in (("--input-size S", size), ("--mean a,b,c", mean), ("--std a,b,c", std))
               if value is None and (need_normalization or flag.startswith("--input-size"))]
    if missing:
        raise BadInputError(f"{what} does not say how it takes its input: pass {' '.join(missing)} "
                            "(mean/std on pixels scaled to [0, 1]; also --resize R, --channels 1|3, --classes FILE)")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BadInputError(f"--input-size must be a positive integer, got {size!r}")
    if mean is not None and len(mean) != channels or std is not None and len(std) != channels:
        raise BadInputError(f"{what}'s mean/std have {len(mean or std)} values but --channels is {channels}: "
                            "pass --mean and --std too")
    resize = stated.resize
    if resize is None and stated.input_size is None and defaults.resize is not None:
        resize = defaults.resize
    elif resize is None:  # the library's crop ratio at the stated size, else ImageNet's 0.875
        crop = defaults.input_size / defaults.resize if defaults.input_size and defaults.resize else DEFAULT_CROP_PCT
        resize = round(size / crop)
    if resize < size:
        raise BadInputError(f"--resize {resize} is smaller than --input-size {size}: the shorter side is resized "
                            "to R, then the centre S x S is cropped")
    stated_norm = stated.mean is not None or stated.std is not None
    # The library's resize filter (timm: bicubic for many models) where edgecnn has it; bilinear otherwise.
    method = defaults.notes.get("interpolation")
    return PreprocessSpec(size=size, channels=channels, mean=mean or (0.0,) * channels,
                          std=std or (1.0,) * channels, normalization="manual" if stated_norm or defaults.mean is None
                          else "model", resize_shorter=int(resize),
                          resize=method if method in RESIZE_METHODS else "bilinear")
