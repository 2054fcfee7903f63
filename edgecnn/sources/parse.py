"""What kind of model a SOURCE string names, told without importing torch.

Forms: `timm:NAME`, `torchvision:NAME`, `path/to/file.py:FUNCTION`, `package.module:FUNCTION`,
`FILE.pt2` (a torch.export program), a TorchScript file (told by its content, whatever its
name) and `FILE.onnx` (an ONNX classifier; a file of that name that holds no ONNX model is refused when
loaded, in one line). Anything else (a zoo name, an edgecnn checkpoint) is not a foreign source: None.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

TIMM, TORCHVISION = "timm", "torchvision"
FILE_FACTORY, MODULE_FACTORY = "factory_file", "factory_module"
EXPORTED, TORCHSCRIPT = "exported_program", "torchscript"
ONNX = "onnx"
LIBRARY_KINDS = (TIMM, TORCHVISION)
FILE_KINDS = (FILE_FACTORY, MODULE_FACTORY, EXPORTED, TORCHSCRIPT, ONNX)

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Suffixes that mean "a foreign file" even when the file is missing (so the error says so).
_EXPORTED_SUFFIXES = (".pt2",)
_TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")
_ONNX_SUFFIXES = (".onnx",)


@dataclass(frozen=True)
class SourceRef:
    """A parsed foreign SOURCE: its kind, the name or file, and the function of a factory."""

    kind: str
    target: str  # library model name, file path or module name
    function: str | None = None
    text: str = ""

    @property
    def name(self) -> str:
        """A short name for the model: what bundle folders and manifests call it."""
        if self.kind in LIBRARY_KINDS:
            return self.target
        if self.kind == FILE_FACTORY:
            return f"{Path(self.target).stem}_{self.function}"
        if self.kind == MODULE_FACTORY:
            return f"{self.target.rpartition('.')[2]}_{self.function}"
        return Path(self.target).stem


def parse_source(source: str | Path) -> SourceRef | None:
    """The foreign source `source` names, or None for a zoo name or an edgecnn checkpoint."""
    text = str(source)
    for kind in LIBRARY_KINDS:
        if text.startswith(f"{kind}:"):
            return SourceRef(kind, text.partition(":")[2].strip(), text=text)
    path = Path(text).expanduser()
    if path.suffix.lower() in _ONNX_SUFFIXES:  # existing or not: the loader says what is wrong with it
        return SourceRef(ONNX, str(path), text=text)
    if path.is_file():
        if path.suffix.lower() in _EXPORTED_SUFFIXES:
            return SourceRef(EXPORTED, str(path), text=text)
        if is_torchscript(path):
            return SourceRef(TORCHSCRIPT, str(path), text=text)
        return None
    if path.suffix.lower() in _EXPORTED_SUFFIXES:
        return SourceRef(EXPORTED, str(path), text=text)
    if path.suffix.lower() in _TORCHSCRIPT_SUFFIXES:
        return SourceRef(TORCHSCRIPT, str(path), text=text)
    before, colon, function = text.rpartition(":")
    if not colon or not function.isidentifier():
        return None
    if before.endswith(".py"):
        return SourceRef(FILE_FACTORY, before, function, text=text)
    if _DOTTED.fullmatch(before):
        return SourceRef(MODULE_FACTORY, before, function, text=text)
    return None


def unusable_source(source: str | Path) -> str | None:
    """Why a SOURCE that is not a foreign model cannot be a zoo name or a checkpoint either (None when it may be).

    Said about the thing that is wrong (the file, the factory reference), so `--mean` on a garbage file is not
    refused as "--mean describes a foreign model".
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return None if _checkpoint_like(path) else (
            f"{path} is not TorchScript, not a checkpoint, not an ONNX file (unreadable or corrupt): give a "
            "torch.jit.save archive, an edgecnn checkpoint (model.pt), a torch.export .pt2 or an .onnx file")
    before, colon, function = text.rpartition(":")
    if colon and (before.endswith(".py") or _DOTTED.fullmatch(before)):
        if not function.strip():
            return f"{text!r} has no function name after ':' (give FILE.py:FUNCTION or package.module:FUNCTION)"
        return f"{text!r}: {function!r} after ':' is not a function name (give FILE.py:FUNCTION)"
    return None


def _checkpoint_like(path: Path) -> bool:
    """A torch.save file: a zip holding data.pkl, a legacy pickle (protocol 2+), or a safetensors file."""
    if path.suffix.lower() == ".safetensors":
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.rpartition("/")[2] == "data.pkl" for n in archive.namelist())
    except (zipfile.BadZipFile, ValueError):
        pass
    except OSError:
        return True  # unreadable: the checkpoint loader says why
    try:
        with open(path, "rb") as handle:
            return handle.read(1) == b"\x80"
    except OSError:
        return True


def is_torchscript(path: Path) -> bool:
    """True for a torch.jit.save archive: a zip with code/ and constants.pkl, which torch.save never writes."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    has_code = any(n.startswith("code/") or "/code/" in n for n in names)
    return has_code and any(n.rpartition("/")[2] == "constants.pkl" for n in names)
