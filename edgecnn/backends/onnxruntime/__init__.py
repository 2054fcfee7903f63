"""ONNX Runtime: `.onnx` files (fp32 and static QDQ int8), CPU execution provider."""

from edgecnn.registry import Backend, register

BACKEND = register(Backend(
    name="onnxruntime",
    label="ONNX Runtime",
    format="onnx",
    suffixes=(".onnx",),
    aliases=("ort", "onnx"),
    runner="edgecnn.backends.onnxruntime.runner:OnnxRuntimeRunner",
    device_extra="onnxruntime",
    host_extra="export",
    precisions=("fp32", "int8"),
    build="edgecnn.backends.onnxruntime.build:build",
    int8="edgecnn.backends.onnxruntime.int8:OnnxRuntimeInt8",
    file_quantizer="edgecnn.backends.onnxruntime.build:quantize_file",
    applied_keys=("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level", "execution_mode"),
    tools=("onnxruntime",),
    order=10,
    build_modules=("onnxruntime",),
    host_target="onnx",
    sensitivity="edgecnn.backends.onnxruntime.sensitivity:explainer",
    tuning="edgecnn.backends.onnxruntime.tuning",  # what edgecnn tune sweeps
))
