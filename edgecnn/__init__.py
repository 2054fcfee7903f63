"""edgecnn: put CNN image classifiers on edge devices, and know how fast and how accurate they are there.

The Python API (edgecnn.api), at the top level:

    load(SOURCE | nn.Module, **preprocessing) -> Model      train(NAME, DATA, ...) -> Model
    export(model, target=..., precision=..., calib_data=..., out=...) -> Bundle
    Bundle.open(path).bench() / .verify() / .tune() / .explain() / .build()   (on=[...] | fleet=...)
    data: edgecnn.data.ImageFolder(DIR), edgecnn.data.Images(array), ...
    errors: EdgecnnError, BadInputError (exit 2), CheckFailedError (exit 1)

`import edgecnn` imports neither torch nor any runtime: each name is imported on first use, so a
device with only its runtime can open a bundle, bench it and verify it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first use).
_API = {
    "load": "edgecnn.api", "train": "edgecnn.api", "export": "edgecnn.api", "Bundle": "edgecnn.api",
    "Model": "edgecnn.api", "ProgressEvent": "edgecnn.api",
    "EdgecnnError": "edgecnn.errors", "BadInputError": "edgecnn.errors", "CheckFailedError": "edgecnn.errors",
    "MissingDependencyError": "edgecnn.errors",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from edgecnn.api import Bundle, Model, ProgressEvent, export, load, train
    from edgecnn.errors import BadInputError, CheckFailedError, EdgecnnError, MissingDependencyError


# Subpackages reachable as attributes after a bare `import edgecnn` (edgecnn.data.ImageFolder(...)).
_SUBPACKAGES = ("api", "data", "errors", "remote")


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"edgecnn.{name}")
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_SUBPACKAGES])


__all__ = ["BadInputError", "Bundle", "CheckFailedError", "EdgecnnError", "MissingDependencyError", "Model",
           "ProgressEvent", "__version__", "export", "load", "train"]
