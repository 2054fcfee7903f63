"""TFLite / LiteRT: `.tflite` files (fp32, fp16, full-integer or weight-only int8) for ARM boards."""

from edgecnn.registry import Backend, register

BACKEND = register(Backend(
    name="tflite",
    label="TFLite / LiteRT",
    format="tflite",
    suffixes=(".tflite",),
    aliases=("litert", "tflite-runtime"),
    runner="edgecnn.backends.tflite.runner:TFLiteRunner",
    device_extra="litert",
    host_extra="tflite",
    precisions=("fp32", "fp16", "int8"),
    build="edgecnn.backends.tflite.build:build",
    int8="edgecnn.backends.tflite.int8:TFLiteInt8",
    applied_keys=("num_threads", "api", "xnnpack", "package", "input_layout", "input_dtype"),
    # litert-torch bakes the batch into reshapes: these files run the batch they were built for.
    static_batch=True,
    tools=("litert-torch", "ai-edge-litert"),
    order=30,
    build_modules=("litert_torch",),
    host_target="arm",
    note_when_emulated="this machine's CPU running the .tflite file, not an ARM board",
    sensitivity="edgecnn.backends.tflite.sensitivity:explainer",
    tuning="edgecnn.backends.tflite.tuning",  # what edgecnn tune sweeps
))
