"""ONNX Runtime runner (CPU execution provider), fp32 and QDQ int8 `.onnx` files."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, require
from edgecnn.backends.runner import FixedBatchError, Runner, chw_from_manifest, static_dims


class OnnxRuntimeRunner(Runner):
    """InferenceSession with explicit threads, all graph optimisations, sequential execution."""

    runtime = "onnxruntime"
    extra = "onnxruntime"
    # execution_mode and allow_spinning are what `edgecnn tune` sweeps besides threads and the level.
    options = frozenset({"graph_optimization", "providers", "inter_op_threads", "execution_mode", "allow_spinning"})

    def load(self, path, *, threads=None, batch=1, **options: Any) -> "OnnxRuntimeRunner":
        options = self._start_load(path, threads, batch, options)
        ort = require("onnxruntime", self.extra, "ONNX Runtime artifacts")
        self.version = ort.__version__
        session_options = _session_options(ort, threads=self.threads, options=options)
        providers = list(options.get("providers") or ["CPUExecutionProvider"])
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options, providers=providers
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BadInputError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self._read_io(options, batch=batch)
        self.applied = self._applied()
        self.binding = self.session.io_binding()
        self._input: np.ndarray | None = None
        return self

    def _read_io(self, options: dict[str, Any], *, batch: int) -> None:
        """Input/output names, fixed batch and (C, H, W) of the session; refuse a wrong batch."""
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BadInputError(f"{self.path.name} has {len(inputs)} inputs; edgecnn expects one image input")
        self.input_name = inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        dims = static_dims(inputs[0].shape)
        if len(dims) != 4:
            raise BadInputError(f"{self.path.name}: input rank {len(dims)}, expected NCHW")
        self.fixed_batch = dims[0]
        if None not in dims[1:]:
            self.input_shape = (dims[1], dims[2], dims[3])
        else:
            self.input_shape = chw_from_manifest(options)
        if self.fixed_batch is not None and self.fixed_batch != batch:
            raise FixedBatchError(
                f"{self.path.name} was exported for batch {self.fixed_batch} only, not {batch} "
                "(export with a dynamic batch axis)"
            )

    def _applied(self) -> dict[str, Any]:
        """The settings the session reports it runs with (not the ones asked for)."""
        applied = self.session.get_session_options()
        return {
            "intra_op_num_threads": applied.intra_op_num_threads,
            "inter_op_num_threads": applied.inter_op_num_threads,
            "graph_optimization_level": str(applied.graph_optimization_level).split(".")[-1],
            "execution_mode": str(applied.execution_mode).split(".")[-1],
            "allow_spinning": _spinning(applied),
            "providers": self.session.get_providers(),
        }

    def bind(self, batch: np.ndarray) -> None:
        batch = self._check_batch(batch)
        self._input = batch  # the binding points at this memory: keep it alive
        self.binding.bind_cpu_input(self.input_name, batch)
        self.binding.bind_output(self.output_name)
        self.batch = batch.shape[0]

    def invoke(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def fetch(self) -> np.ndarray:
        return np.asarray(self.binding.copy_outputs_to_cpu()[0], dtype=np.float32)

    def close(self) -> None:
        self.binding = None
        self.session = None



def _spinning(session_options) -> bool:
    """Whether intra-op threads spin (ORT's default, when no config entry says otherwise)."""
    try:
        return session_options.get_session_config_entry("session.intra_op.allow_spinning") != "0"
    except RuntimeError:  # the entry was never set
        return True


def _session_options(ort, *, threads: int, options: dict[str, Any]):
    """SessionOptions for `threads` intra-op threads and the asked graph optimisation level."""
    session_options = ort.SessionOptions()
    # intra-op threads do the work of one inference; a CNN is a chain, so one inter-op
    # thread and sequential execution avoid oversubscribing the cores.
    session_options.intra_op_num_threads = threads
    session_options.inter_op_num_threads = int(options.get("inter_op_threads", 1))
    modes = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}
    mode = str(options.get("execution_mode", "sequential")).lower()
    if mode not in modes:
        raise BadInputError(f"execution_mode must be sequential or parallel, got {mode!r}")
    session_options.execution_mode = modes[mode]
    spinning = options.get("allow_spinning")
    if spinning is not None:
        # Spinning keeps idle pool threads busy-waiting: lower latency on idle cores, worse on shared ones.
        flag = "1" if spinning else "0"
        session_options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        session_options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    level_name = str(options.get("graph_optimization", "all")).lower()
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level_name not in levels:
        raise BadInputError(
            f"graph_optimization must be one of {', '.join(levels)}, got {level_name!r}"
        )
    session_options.graph_optimization_level = levels[level_name]
    return session_options


__all__ = ["OnnxRuntimeRunner"]
