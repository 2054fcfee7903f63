"""OpenVINO: `.xml` + `.bin` IR (fp32, fp16, NNCF int8) on Intel/AMD CPUs."""

from edgecnn.registry import Backend, register

BACKEND = register(Backend(
    name="openvino",
    label="OpenVINO",
    format="openvino",
    suffixes=(".xml",),
    aliases=("ov",),
    runner="edgecnn.backends.openvino.runner:OpenVinoRunner",
    device_extra="openvino-runtime",
    host_extra="openvino",
    precisions=("fp32", "fp16", "int8"),
    build="edgecnn.backends.openvino.build:build",
    int8="edgecnn.backends.openvino.int8:OpenVinoInt8",
    file_quantizer="edgecnn.backends.openvino.build:quantize_file",
    applied_keys=("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS"),
    tools=("openvino", "nncf"),
    order=20,
    build_modules=("openvino",),
    host_target="x86",
    sensitivity="edgecnn.backends.openvino.sensitivity:explainer",
    tuning="edgecnn.backends.openvino.tuning",  # what edgecnn tune sweeps
))
