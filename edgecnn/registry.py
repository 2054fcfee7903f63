"""The backend registry: one `Backend` per runtime, registered once, found by name, alias or suffix.

A backend is everything edgecnn knows about one runtime: its name and label, the artifact format and
file suffixes, the extra that brings it on a host (to build) and on a device (to run), its build step
for the export pipeline, its INT8 method, its Runner, its tuning knobs and its sensitivity reader, the
options it reports as applied and whether its artifacts have a static batch. Profiles, the pipeline,
bench, verify, explain, tune, the report, quickstart and `edgecnn devices` read from here; no other
module names a runtime.

This module sits at the bottom of the package (it imports only edgecnn.errors), so anything may ask
it; the runtimes themselves live in `edgecnn/backends/<name>/`, each declared by the `backend.toml` in
its folder (this dataclass's fields, as data). Discovery reads every subpackage's declaration, so
adding a runtime is adding a folder. Nothing is imported to register: the Runner, build step, INT8
method and the rest are declared as "module:attribute" strings and imported only when used, so a device
never imports torch or an SDK it does not use. A malformed declaration is a RegistryError; it is never
skipped.
"""


from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from edgecnn.errors import BadInputError, RegistryError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

@dataclass(frozen=True)
class Backend:
    """What edgecnn knows about one runtime."""

    name: str  # canonical runtime name, as in manifests and --runtime
    label: str  # what people read in tables: "ONNX Runtime"
    format: str  # the manifest's artifact format: "onnx", "openvino", "tflite", ...
    suffixes: tuple[str, ...]  # artifact file suffixes, for `bench FILE` without a bundle
    runner: str  # "module:Class" of its Runner
    device_extra: str  # pip extra that runs it on a device (no torch)
    host_extra: str = "all"  # pip extra that builds its artifacts on a host
    aliases: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp32",)  # what its build step can produce
    build: str | None = None  # "module:function" (BuildContext) -> None; None: not an export target
    # "module:Class" of its INT8 method (edgecnn.quantize.Int8Method): how it writes a full-int8 candidate
    # per recipe, keeps named layers in float, re-quantizes with layers excluded, lists its layers. The
    # pipeline runs the search with it and records the result; None: no int8 at export.
    int8: str | None = None
    # "module:function" (BuildContext) -> None run after the INT8 step: parts that need the final
    # artifacts (TensorRT's engine plans, build script, engines). None: nothing after.
    finish: str | None = None
    # "module:function" (model_file, out_file, images, *, method, symmetric) -> one-line summary: the
    # quantizer `edgecnn quantize` runs on a file of another artifact's format (ONNX -> this backend's file)
    file_quantizer: str | None = None
    applied_keys: tuple[str, ...] = ()  # runner settings bench shows, in reading order
    static_batch: bool = False  # artifacts bake their batch in: verify runs batch 1
    order: int = 100  # position in tables (report, devices, bench)
    deploy: bool = True  # False for the PyTorch eager baseline: never a target
    built_on_device: bool = False  # the final artifact is built on the device (TensorRT engines)
    # "module:function" (bundle_path, *, precision, dla_core, force, note) -> report: `edgecnn build`
    device_build: str | None = None
    host_target: str | None = None  # the profile quickstart builds for it on a host
    build_modules: tuple[str, ...] = ()  # Python modules its build step needs on the host
    profile_table: str | None = None  # a [table] of backend-specific settings in its profiles
    profile_table_required: bool = False
    note_when_emulated: str = ""  # said when its latency was measured on another CPU than the device's
    tools: tuple[str, ...] = ()  # distributions whose versions shape its artifacts (recorded in manifests)
    package: str = ""  # the subpackage that declares it (set by discovery)
    tuning: str | None = None  # module `edgecnn tune` sweeps (its TUNABLES); None: threads only
    # "module:function" (int8_path, fp32_path, inputs) -> (layers, make or None): what `edgecnn explain`
    # looks inside an int8 artifact with; None: explain cannot look inside this runtime's files
    sensitivity: str | None = None

    def load_runner_class(self) -> type:
        return _load(self.runner)

    def new_runner(self) -> Any:
        """A fresh, unloaded Runner (imports the runner module, not its SDK yet)."""
        return self.load_runner_class()()

    def build_step(self) -> Callable[..., None]:
        if self.build is None:
            raise BadInputError(f"{self.label} is not an export target")
        return _load(self.build)

    def int8_method(self) -> Any:
        """A fresh INT8 method (edgecnn.quantize.Int8Method) for one export."""
        if self.int8 is None:
            raise BadInputError(f"{self.label} has no INT8 quantizer")
        return _load(self.int8)()

    def finish_step(self) -> Callable[..., None] | None:
        return None if self.finish is None else _load(self.finish)

    def tuning_module(self) -> Any:
        """The module `edgecnn tune` sweeps for this runtime, or None (threads only)."""
        return None if self.tuning is None else importlib.import_module(self.tuning)

    def explainer(self) -> Callable[..., Any]:
        if self.sensitivity is None:
            raise BadInputError(f"edgecnn explain cannot look inside {self.label} artifacts yet")
        return _load(self.sensitivity)

    def device_build_step(self) -> Callable[..., Any]:
        if self.device_build is None:
            raise BadInputError(f"{self.label} artifacts are complete at export: there is nothing to build on the device")
        return _load(self.device_build)

    def file_quantize_step(self) -> Callable[..., str]:
        if self.file_quantizer is None:
            raise BadInputError(f"edgecnn quantize cannot write {self.label} files ({', '.join(self.suffixes)})")
        return _load(self.file_quantizer)


# Where the runtimes live: one subpackage each, found by listing the folder (adding a runtime is adding one).
BACKENDS_PACKAGE = "edgecnn.backends"
_REGISTRY: dict[str, Backend] = {}
_ALIASES: dict[str, str] = {}
_discovered = False


def register(backend: Backend) -> Backend:
    """Add a backend; a name, alias or suffix already taken is a RegistryError."""
    if backend.name in _REGISTRY:
        raise RegistryError(f"backend {backend.name!r} is registered twice")
    for alias in backend.aliases:
        key = alias.lower()
        owner = _ALIASES.get(key) or (key if key in _REGISTRY else None)
        if owner is not None:
            raise RegistryError(f"backend alias {alias!r} of {backend.name!r} is already {owner!r}")
    for suffix in backend.suffixes:
        for other in _REGISTRY.values():
            if suffix in other.suffixes:
                raise RegistryError(f"suffix {suffix} of backend {backend.name!r} is already {other.name!r}'s")
    _REGISTRY[backend.name] = backend
    for alias in backend.aliases:
        _ALIASES[alias.lower()] = backend.name
    return backend


DECLARATION = "backend.toml"


def _discover() -> None:
    """Register the backend every subpackage of edgecnn.backends declares in its backend.toml, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(BACKENDS_PACKAGE)
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.ispkg:  # read from the folder, not imported: a subpackage's __init__ asks `declared`
            folder = Path(module.module_finder.path) / module.name
            register(_declared_in(f"{BACKENDS_PACKAGE}.{module.name}", folder / DECLARATION))


def _declared_in(package: str, where: Path) -> Backend:
    """The Backend a runtime's folder declares (lists become tuples; an unknown or missing field is refused)."""
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{package}: cannot read {DECLARATION}: {exc}") from None
    known = {f.name for f in fields(Backend)} - {"package"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RegistryError(f"{package}/{DECLARATION}: {unknown[0]!r} is not a Backend field ({', '.join(sorted(known))})")
    try:
        return Backend(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}, package=package)
    except TypeError as exc:  # a required field missing
        raise RegistryError(f"{package}/{DECLARATION}: {exc}") from None


def declared(package: str) -> Backend:
    """The registered Backend that `package` (a runtime's subpackage) declares."""
    _discover()
    for backend in _REGISTRY.values():
        if backend.package == package:
            return backend
    raise RegistryError(f"{package} declares no backend ({DECLARATION} missing)")


def backends(*, deploy_only: bool = False) -> list[Backend]:
    """Every registered backend in table order."""
    _discover()
    found = sorted(_REGISTRY.values(), key=lambda b: (b.order, b.name))
    return [b for b in found if b.deploy or not deploy_only]


def baseline_backend() -> Backend:
    """The backend every artifact is compared with: the one registered backend that is never a deploy target."""
    (baseline,) = [b for b in backends() if not b.deploy]
    return baseline


def runtime_names() -> list[str]:
    """The runtimes edgecnn can run, in table order."""
    return [b.name for b in backends()]


def resolve_runtime(name: str) -> str:
    """Canonical runtime name for a name or alias; BadInputError listing the valid ones."""
    _discover()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise BadInputError(f"unknown runtime {name!r}: choose one of {', '.join(runtime_names())}")
    return key


def get_backend(name: str) -> Backend:
    """The backend for a runtime name or alias."""
    return _REGISTRY[resolve_runtime(name)]


def get_runner(runtime: str) -> Any:
    """A fresh, unloaded Runner for `runtime`."""
    return get_backend(runtime).new_runner()


def runtime_for_path(path: str | Path) -> str:
    """The runtime that runs an artifact file, from its suffix."""
    suffix = Path(path).suffix.lower()
    for backend in backends():
        if suffix in backend.suffixes:
            return backend.name
    known = ", ".join(sorted(s for b in backends() for s in b.suffixes))
    raise BadInputError(f"cannot tell the runtime of {Path(path).name!r} from its suffix ({known}): pass --runtime")


def label(runtime: str) -> str:
    """The readable name of a runtime; the name itself when it is not registered."""
    _discover()
    backend = _REGISTRY.get(_ALIASES.get(runtime, runtime))
    return backend.label if backend else runtime


def applied_keys() -> tuple[str, ...]:
    """Every backend's applied-option keys, in table order, without repeats."""
    keys: list[str] = []
    for backend in backends():
        keys.extend(k for k in backend.applied_keys if k not in keys)
    return tuple(keys)


def _load(reference: str) -> Any:
    """The attribute a "module:attribute" declaration names (imported now, not at registration)."""
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


__all__ = ["Backend", "register", "backends", "baseline_backend", "runtime_names", "resolve_runtime", "get_backend", "get_runner",
           "runtime_for_path", "label", "applied_keys"]
