"""edgecnn: put CNN image classifiers on edge devices, and know how fast and how accurate they are there.

The Python API (edgecnn.api), at the top level:

    load(SOURCE | nn.Module, **preprocessing) -> Model      train(NAME, DATA, ...) -> Model
    export(model, target=..., precision=..., calib_data=..., out=...) -> Bundle
    Bundle.open(path).bench() / .verify() / .tune() / .explain() / .build()   (on=[...] | fleet=...)
    data: edgecnn.data.ImageFolder(DIR), edgecnn.data.Images(array), ...
    which model to ship: edgecnn.compare_models.compare(*SOURCES, targets=..., data=...) -> CompareResult
    errors: EdgecnnError, BadInputError (exit 2), CheckFailedError (exit 1)

`import edgecnn` imports neither torch nor any runtime: each name is imported on first use, so a
device with only its runtime can open a bundle, bench it and verify it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first use).
_API = {
    "load": "edgecnn.api", "Bundle": "edgecnn.api",
    "Model": "edgecnn.api", "ProgressEvent": "edgecnn.api",
    "EdgecnnError": "edgecnn.errors", "BadInputError": "edgecnn.errors", "CheckFailedError": "edgecnn.errors",
    "MissingDependencyError": "edgecnn.errors",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from edgecnn.api import Bundle, Model, ProgressEvent, load
    from edgecnn.errors import BadInputError, CheckFailedError, EdgecnnError, MissingDependencyError


class _SharedName:
    """`edgecnn.train` and `edgecnn.export`: API functions that share their names with subpackages.

    Calling one calls the API function (edgecnn.api.train / .export); its attributes are the
    subpackage's, so `edgecnn.train.TrainConfig`, `import edgecnn.export.onnx` and monkeypatching
    `edgecnn.train.train` keep meaning the package. Without this, the first import of the subpackage
    would replace the function with the module (the import system binds a subpackage on its parent).
    """

    __slots__ = ("_function", "_package")

    def __init__(self, function: str, package: str):
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "_package", package)

    def _api(self):
        return getattr(importlib.import_module("edgecnn.api"), self._function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._api()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._package), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(importlib.import_module(self._package), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(importlib.import_module(self._package), name)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._api().__doc__

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._api())

    def __repr__(self) -> str:
        return f"<function edgecnn.{self._function} (and package {self._package})>"


train = _SharedName("train", "edgecnn.train")
export = _SharedName("export", "edgecnn.export")


class _Package(types.ModuleType):
    """The edgecnn package: keeps `train` and `export` the API's when their subpackages are imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(globals().get(name), _SharedName) and isinstance(value, types.ModuleType):
            return  # the import system binding the subpackage: the shared name already reaches it
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

# Subpackages reachable as attributes after a bare `import edgecnn` (edgecnn.data.ImageFolder(...)).
_SUBPACKAGES = ("api", "compare_models", "data", "errors", "remote")


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
