"""On the device: build TensorRT engines with the TensorRT Python API (8.2 .. 11.x) and register them.

Precision by TensorRT version: 8.x/10.x build fp16 with the FP16 builder flag and a Q/DQ graph with
the INT8 flag; 11.x removed both flags (every network is strongly typed), so fp16 comes from the
fp16 graph and int8 from the Q/DQ graph alone. Imports only numpy and edgecnn's core at module level:
`edgecnn build` runs this on a Jetson.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from edgecnn.atomic import write_bytes_atomic, write_json_atomic
from edgecnn.backends.tensorrt.plans import trt_settings
from edgecnn.backends.tensorrt.provenance import (
    machine_provenance,
    parse_trt_version,
    provenance_mismatches,
    provenance_path,
    read_provenance,
)
from edgecnn.errors import BadInputError, CheckFailedError, require

if TYPE_CHECKING:  # pragma: no cover
    from edgecnn.profiles import DeviceProfile


@dataclass(frozen=True)
class EngineBuildResult:
    """An engine built (or adopted) on this device."""

    path: Path
    precision: str
    source: Path
    provenance: dict
    build_s: float
    adopted: bool = False  # built earlier (e.g. by build_engine.sh) and still valid here

    @property
    def sidecar(self) -> Path:
        return provenance_path(self.path)


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profile: "DeviceProfile",
                 precision: str, *, timing_cache: str | os.PathLike | None = None, dla_core: int | None = None,
                 onnx_fp16_path: str | os.PathLike | None = None, workspace_mb: int | None = None,
                 batch: dict | None = None, verbose: bool = False) -> EngineBuildResult:
    """Build a serialized TensorRT engine from ONNX with TensorRT's Python API (8.2 .. 11.x).

    One optimization profile over the profile's batch range (min/opt/max) when the ONNX batch is
    dynamic, the workspace limit, the timing cache read from and written back to `timing_cache`,
    DLA core `dla_core` with GPU fallback. fp16/int8 set the builder flags on 8.x/10.x; on 11.x
    (strongly typed) fp16 builds `onnx_fp16_path` and int8 the Q/DQ graph as it is. Writes the
    engine and its provenance sidecar atomically.
    """
    trt = require("tensorrt", "tensorrt", "building TensorRT engines")
    engine_path = Path(engine_path)
    precision = profile.check_precision(precision)
    major = parse_trt_version(trt.__version__)[0]
    source = _engine_source(trt.__version__, precision, Path(onnx_path), onnx_fp16_path)
    strongly_typed = major >= 11
    settings = trt_settings(profile)
    batch_range = {**settings["batch"], **(batch or {})}
    workspace = int(workspace_mb or settings["workspace_mb"])

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # The parser owns the weights the network points at: it stays alive until the build is done.
    network, parser = _parse_network(trt, builder, logger, source, major)
    config = _builder_config(trt, builder, workspace_mb=workspace,
                             precision=None if strongly_typed else precision)
    _add_batch_profile(builder, config, network, batch_range, source)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None and hasattr(config, "create_timing_cache"):
        data = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False)
    if dla_core is not None:
        _use_dla(trt, builder, config, dla_core=dla_core, has_dla=settings["dla"], profile=profile,
                 precision=precision)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - started
    del parser
    if serialized is None:
        raise CheckFailedError(f"TensorRT {trt.__version__} failed to build {engine_path.name} "
                               "(rerun with EDGECNN_DEBUG=1 for TensorRT's log)")
    write_bytes_atomic(engine_path, bytes(serialized))
    if cache_path is not None and hasattr(config, "get_timing_cache"):
        cache = config.get_timing_cache()
        if cache is not None:
            write_bytes_atomic(cache_path, bytes(cache.serialize()))
    provenance = _provenance(trt, source, precision=precision, dla_core=dla_core, workspace_mb=workspace,
                             batch_range=batch_range, strongly_typed=strongly_typed, build_s=build_s)
    write_json_atomic(provenance_path(engine_path), provenance)
    return EngineBuildResult(path=engine_path, precision=precision, source=source, provenance=provenance,
                             build_s=build_s)


def _engine_source(version: str, precision: str, onnx_path: Path,
                   onnx_fp16_path: str | os.PathLike | None) -> Path:
    """The ONNX this TensorRT builds `precision` from: 11.x takes fp16 from the fp16 graph."""
    parsed = parse_trt_version(version)
    if parsed < (8, 2, 0):
        raise BadInputError(f"TensorRT {version} is too old: edgecnn builds with TensorRT 8.2 or newer")
    source = onnx_path
    if parsed[0] >= 11 and precision == "fp16":
        if onnx_fp16_path is None or not Path(onnx_fp16_path).is_file():
            raise BadInputError(
                f"TensorRT {version} takes fp16 from the graph (no FP16 builder flag since 11.0) and the "
                "bundle has no fp16 ONNX: re-export the bundle with this edgecnn, or build fp32/int8"
            )
        source = Path(onnx_fp16_path)
    if not source.is_file():
        raise BadInputError(f"ONNX model not found: {source}")
    return source


def _parse_network(trt: Any, builder: Any, logger: Any, source: Path, major: int) -> tuple[Any, Any]:
    """(network, parser) for the ONNX at `source`; the network must have one image input."""
    flags = 0
    if major < 10:  # implicit batch is gone in 10; on 8.x explicit batch must be asked for
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise CheckFailedError(f"TensorRT {trt.__version__} cannot parse {source.name}: "
                               + ("; ".join(errors[:3]) or "unknown parser error"))
    if network.num_inputs != 1:
        raise BadInputError(f"{source.name} has {network.num_inputs} inputs; edgecnn engines take one image input")
    return network, parser


def _builder_config(trt: Any, builder: Any, *, workspace_mb: int, precision: str | None) -> Any:
    """Workspace limit and, where TensorRT still has them (< 11), the fp16/int8 builder flags."""
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:  # TensorRT 8.2/8.3
        config.max_workspace_size = workspace_mb << 20
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        # Explicit quantization: the Q/DQ graph carries the scales, no calibrator is set.
        config.set_flag(trt.BuilderFlag.INT8)
    return config


def _add_batch_profile(builder: Any, config: Any, network: Any, batch_range: dict, source: Path) -> None:
    """One optimization profile over min/opt/max batch when the input batch is dynamic."""
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    if not shape or shape[0] != -1:
        return
    chw = shape[1:]
    if any(d < 0 for d in chw):
        raise BadInputError(f"{source.name} has a dynamic image size {shape}: export it with a fixed size")
    optimization = builder.create_optimization_profile()
    optimization.set_shape(tensor.name, (batch_range["min"], *chw), (batch_range["opt"], *chw),
                           (batch_range["max"], *chw))
    config.add_optimization_profile(optimization)


def _use_dla(trt: Any, builder: Any, config: Any, *, dla_core: int, has_dla: bool, profile: "DeviceProfile",
             precision: str) -> None:
    """Run on DLA core `dla_core`, falling back to the GPU for the layers DLA lacks."""
    available = int(getattr(builder, "num_DLA_cores", 0))
    if not has_dla or available == 0:
        raise BadInputError(f"target {profile.name} has no DLA here (this device reports {available} DLA cores)")
    if not 0 <= dla_core < available:
        raise BadInputError(f"--dla-core {dla_core}: this device has DLA cores 0..{available - 1}")
    if precision == "fp32":
        raise BadInputError("DLA runs fp16 or int8 only: build with --precision fp16 or int8 for DLA")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _provenance(trt: Any, source: Path, *, precision: str, dla_core: int | None, workspace_mb: int,
                batch_range: dict, strongly_typed: bool, build_s: float) -> dict[str, Any]:
    """The engine's sidecar: this machine, and everything the build was given."""
    from edgecnn.bundle import file_sha256

    return {
        **machine_provenance(trt),
        "precision": precision,
        "dla_core": dla_core,
        "source": source.name,
        "source_sha256": file_sha256(source),
        "workspace_mb": workspace_mb,
        "batch": {k: int(batch_range[k]) for k in ("min", "opt", "max")},
        "strongly_typed": strongly_typed,
        "built_with": "edgecnn (TensorRT Python API)",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_s": round(build_s, 3),
    }


def adoptable_engine(engine_path: str | os.PathLike, source_paths: Sequence[str | os.PathLike],
                     current: dict[str, Any] | None = None) -> dict | None:
    """The provenance of an existing engine that is valid on this machine and built from one of
    `source_paths` as they are now (e.g. by build_engine.sh), else None."""
    from edgecnn.bundle import file_sha256

    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return None
    recorded = read_provenance(engine_path)
    if recorded is None:
        return None
    if provenance_mismatches(recorded, current if current is not None else machine_provenance()):
        return None
    hashes = {file_sha256(p) for p in source_paths if p and Path(p).is_file()}
    return recorded if recorded.get("source_sha256") in hashes else None


def register_engines(bundle_root: str | os.PathLike, results: Sequence[EngineBuildResult],
                     input_spec: dict | None = None) -> Path:
    """Add (or replace) the engines' entries in the bundle's manifest.json, atomically.

    Each entry lists the engine and its provenance sidecar with their sha256, so bench/verify
    refuse an engine that changed after it was registered.
    """
    from edgecnn.bundle import MANIFEST_NAME, artifact_entry, load_bundle

    root = Path(bundle_root).resolve()
    bundle = load_bundle(root)
    manifest = dict(bundle.manifest)
    spec = dict(input_spec or (manifest.get("input") or {}))
    entries = [e.to_dict() for e in bundle.artifacts]
    for result in results:
        engine, source = Path(result.path).resolve(), Path(result.source).resolve()
        new = artifact_entry(root, [engine, provenance_path(engine)], format="tensorrt", runtime="tensorrt",
                             precision=result.precision, input=spec,
                             batch_range=result.provenance.get("batch"), provenance=result.provenance,
                             source=source.relative_to(root).as_posix() if source.is_relative_to(root)
                             else str(result.source))
        entries = [e for e in entries if e.get("path") != new.path] + [new.to_dict()]
    manifest["artifacts"] = entries
    path = root / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return path
