"""Reading an ncnn `.param` text file: its blobs, its layers, the input shape, without loading it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.atomic import write_text_atomic
from edgecnn.errors import BadInputError

MAGIC = "7767517"  # the first line of every text .param file


@dataclass(frozen=True)
class ParamGraph:
    """What a .param file declares."""

    inputs: tuple[str, ...]  # the blobs Input layers produce
    outputs: tuple[str, ...]  # blobs produced and never consumed
    input_shape: tuple[int, int, int] | None  # [C, H, W] from the Input layer's 0=w 1=h 2=c, when set
    layers: Counter = field(default_factory=Counter)  # layer type -> count


def read_param(path: Path) -> ParamGraph:
    """Parse a text .param file; BadInputError naming the file and the line when it is not one."""
    def bad(problem: str) -> BadInputError:
        return BadInputError(f"{path.name} is not an ncnn .param file: {problem}")

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise bad("it is not text (a binary .param.bin is not supported)") from None

    if not lines or lines[0].strip() != MAGIC:
        raise bad(f"the first line is not the magic number {MAGIC}")
    header = lines[1].split() if len(lines) > 1 else []
    if len(header) != 2 or not all(v.isdigit() for v in header):
        raise bad("line 2 must be '<layer count> <blob count>'")
    layer_count = int(header[0])
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != layer_count:
        raise bad(f"line 2 declares {layer_count} layers, the file has {len(rows)}")
    inputs, produced, consumed, shape = [], [], set(), None
    layers: Counter = Counter()
    for number, row in enumerate(rows, start=3):
        if len(row) < 4 or not row[2].isdigit() or not row[3].isdigit():
            raise bad(f"line {number} is not '<type> <name> <bottoms> <tops> ...'")
        n_bottom, n_top = int(row[2]), int(row[3])
        if len(row) < 4 + n_bottom + n_top:
            raise bad(f"line {number} names fewer blobs than it declares")
        bottoms, tops = row[4:4 + n_bottom], row[4 + n_bottom:4 + n_bottom + n_top]
        layers[row[0]] += 1
        consumed.update(bottoms)
        produced.extend(tops)
        if row[0] == "Input":
            inputs.extend(tops)
            shape = shape or _input_shape(row[4 + n_bottom + n_top:])
    outputs = tuple(b for b in produced if b not in consumed)
    return ParamGraph(inputs=tuple(inputs), outputs=outputs, input_shape=shape, layers=layers)


def _input_shape(params: list[str]) -> tuple[int, int, int] | None:
    """[C, H, W] from an Input layer's 0=w 1=h 2=c, None unless all three are positive."""
    values = dict(p.split("=", 1) for p in params if "=" in p)
    try:
        w, h, c = (int(values[k]) for k in ("0", "1", "2"))
    except (KeyError, ValueError):
        return None
    return (c, h, w) if min(c, h, w) > 0 else None


def with_input_shape(path: Path, shape: tuple[int, int, int]) -> None:
    """Write [C, H, W] into the Input layer (0=w 1=h 2=c) so the file says what it takes.

    pnnx leaves the Input layer bare; ncnn reads these as shape hints and `bench model.param`
    can then size its input without a manifest.
    """
    c, h, w = shape
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines[2:], start=2):
        row = line.split()
        if row and row[0] == "Input":
            kept = [p for p in row[4 + int(row[2]) + int(row[3]):] if p.split("=", 1)[0] not in ("0", "1", "2")]
            lines[index] = " ".join([*row[:4 + int(row[2]) + int(row[3])], f"0={w}", f"1={h}", f"2={c}", *kept])
    write_text_atomic(path, "\n".join(lines) + "\n")
