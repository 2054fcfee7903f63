"""The Python API: everything the CLI does, importable and typed; the CLI is a thin layer over it.

    model = edgecnn.load(SOURCE or nn.Module, input_size=..., mean=..., std=...)   # or edgecnn.train(...)
    bundle = edgecnn.export(model, target="x86", precision="int8", calib_data="digits", out="dist/x86")
    bundle = edgecnn.Bundle.open("dist/x86")
    bundle.bench(batch=[1, 8]) / .verify(data=...) / .tune() / .explain() / .build()   (on=[...] | fleet=...)

Modules: model (load, train, Model), export (export), bundle_handle (Bundle), device_runs (bench, verify,
tune: torch-free), host_runs (explain, build), results (the typed results; `to_dict()` is the CLI's
--json), progress (the optional progress callback; the library prints nothing). Importing this
package imports no torch: the functions that need it import it when called.
"""

from __future__ import annotations

from edgecnn.api.bundle_handle import Bundle
from edgecnn.api.export import export
from edgecnn.api.model import Model, Preprocessing, load, train
from edgecnn.api.progress import ProgressEvent
from edgecnn.api.results import (
    ArtifactResult, BenchResult, BenchRow, BuildResult, ExplainResult, ExportResult, RemoteResult, TuneResult,
    VerifyReport,
)

__all__ = ["ArtifactResult", "BenchResult", "BenchRow", "Bundle", "BuildResult", "ExplainResult", "ExportResult",
           "Model", "Preprocessing", "ProgressEvent", "RemoteResult", "TuneResult", "VerifyReport", "export", "load",
           "train"]
