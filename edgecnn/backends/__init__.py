"""The runtimes, one subpackage each (`edgecnn/backends/<name>/`), each registering one Backend.

The registry itself is `edgecnn.registry` (the bottom of the package, so profiles and the INT8 step can
ask it without importing any runtime); its names are re-exported here for the code above the backends.
"""

from edgecnn.registry import (  # noqa: F401 (re-exported)
    Backend, applied_keys, backends, baseline_backend, get_backend, get_runner, label, register, resolve_runtime,
    runtime_for_path, runtime_names,
)

__all__ = ["Backend", "register", "backends", "baseline_backend", "runtime_names", "resolve_runtime", "get_backend",
           "get_runner", "runtime_for_path", "label", "applied_keys"]
