"""Models a user brings as code or files: a factory (`file.py:FUNCTION`, `package.module:FUNCTION`),
a torch.export program (`.pt2`) and a TorchScript archive. A user's file is code they chose to run;
a --state-dict stays weights_only."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch

from edgecnn.errors import BadInputError
from edgecnn.sources.parse import EXPORTED, FILE_FACTORY, MODULE_FACTORY, SourceRef


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_file_model(ref: SourceRef):
    """The nn.Module a factory returns, or the one a .pt2 / TorchScript file holds (not yet in eval mode)."""
    if ref.kind in (FILE_FACTORY, MODULE_FACTORY):
        return call_factory(ref)
    path = Path(ref.target)
    if not path.is_file():
        what = "torch.export program" if ref.kind == EXPORTED else "TorchScript file"
        raise BadInputError(f"no such {what}: {path}")
    return _load_exported(path) if ref.kind == EXPORTED else _load_torchscript(path)


def call_factory(ref: SourceRef):
    """Import the factory's module, call the factory with no arguments, check it made an nn.Module."""
    module = _import_file(Path(ref.target)) if ref.kind == FILE_FACTORY else _import_module(ref.target)
    factory = getattr(module, ref.function, None)
    if factory is None or not callable(factory):
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        listed = f" (it defines {', '.join(defined[:8])})" if defined else ""
        raise BadInputError(f"{ref.target} has no function {ref.function!r}{listed}")
    required = _required_parameters(factory)
    if required:
        raise BadInputError(f"factory {ref.function} requires argument(s) {', '.join(required)}: edgecnn calls it "
                            "with none; wrap it in a function that takes no arguments")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code: quote what it said
        raise BadInputError(f"factory {ref.function} raised {_first_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(f"factory {ref.function} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _required_parameters(factory) -> list[str]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call tell
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in signature.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty]


def _import_file(path: Path):
    path = path.expanduser()
    if not path.is_file():
        raise BadInputError(f"no such Python file: {path}")
    name = f"edgecnn_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a syntax error or a failing import in the user's file
        sys.modules.pop(name, None)
        raise BadInputError(f"cannot import {path}: {_first_line(exc)}") from None
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise BadInputError(f"no module named {exc.name!r} (is the package installed, or on PYTHONPATH?)") from None
        raise BadInputError(f"cannot import {name}: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise BadInputError(f"cannot import {name}: {_first_line(exc)}") from None


def _load_exported(path: Path):
    import logging
    import zipfile

    if not zipfile.is_zipfile(path):
        raise BadInputError(f"cannot read {path} as a torch.export program: not a .pt2 archive (torch.export.save)")
    # torch.export.load logs a traceback before it falls back to its older format: the error below says it.
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - truncated, another torch's format
        raise BadInputError(f"cannot read {path} as a torch.export program: {_first_line(exc)}") from None
    finally:
        log.setLevel(level)
    return ExportedProgramModule(program.module())


def _load_torchscript(path: Path):
    import warnings

    try:
        with warnings.catch_warnings():  # torch's deprecation notice is not ours to print before (or without) an error
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise BadInputError(f"cannot read {path} as TorchScript: {_first_line(exc)}") from None


class ExportedProgramModule(torch.nn.Module):
    """An ExportedProgram's module; its graph refuses train()/eval(), and its mode was fixed at export."""

    def __init__(self, graph_module):
        super().__init__()
        self.program = graph_module

    def train(self, mode: bool = True):
        self.training = mode  # not passed down: the exported graph's behaviour cannot change
        return self

    def forward(self, x):
        return self.program(x)


def load_state_dict_into(model, file: str | Path, *, name: str) -> str:
    """Load a user's state dict (weights_only) into a factory's model strictly; returns the provenance label."""
    from edgecnn.checkpoint import load_weights_into, normalize_state_dict, torch_load

    path = Path(file).expanduser()
    if not path.is_file():
        raise BadInputError(f"--state-dict: no such file {path}")
    state = normalize_state_dict(torch_load(path, what="state dict"))
    load_weights_into(model, state, arch=name, origin=str(path))
    return f"file:{path}"
