"""TensorRT: engines built on the Jetson/CUDA device from the bundle's ONNX graphs (fp32, fp16, Q/DQ int8)."""

from edgecnn.registry import Backend, register

BACKEND = register(Backend(
    name="tensorrt",
    label="TensorRT",
    format="tensorrt",
    suffixes=(".engine", ".plan"),
    aliases=("trt",),
    runner="edgecnn.backends.tensorrt.runner:TensorRTRunner",
    device_extra="tensorrt",
    host_extra="export",
    precisions=("fp32", "fp16", "int8"),
    build="edgecnn.backends.tensorrt.build:build",
    int8="edgecnn.backends.tensorrt.int8:TensorRTInt8",
    finish="edgecnn.backends.tensorrt.build:finish",
    applied_keys=("api", "input_dtype", "gpu", "batch_range", "precision"),
    order=40,
    built_on_device=True,
    device_build="edgecnn.backends.tensorrt.device_build:build_bundle_engines",
    build_modules=("onnxruntime",),
    host_target="jetson",
    profile_table="tensorrt",
    profile_table_required=True,
    tuning="edgecnn.backends.tensorrt.tuning",  # what edgecnn tune sweeps
))
