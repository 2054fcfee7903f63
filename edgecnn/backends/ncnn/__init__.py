"""ncnn (Tencent): `.param` + `.bin` pairs converted by pnnx, fp32 and fp16, for ARM boards such as the Pi 5."""

from edgecnn.registry import Backend, register

BACKEND = register(Backend(
    name="ncnn",
    label="ncnn",
    format="ncnn",
    suffixes=(".param",),
    runner="edgecnn.backends.ncnn.runner:NcnnRunner",
    device_extra="ncnn",
    host_extra="pnnx",
    # No int8: ncnn's calibration tools (ncnn2table, ncnn2int8) are C++ programs that neither the
    # ncnn nor the pnnx wheel ships; see edgecnn/backends/ncnn/build.py.
    precisions=("fp32", "fp16"),
    build="edgecnn.backends.ncnn.build:build",
    applied_keys=("num_threads", "use_fp16_storage", "use_fp16_arithmetic", "use_packing_layout"),
    # An ncnn net takes one image (a C,H,W Mat): a batch is that many extractor runs.
    static_batch=True,
    tools=("pnnx", "ncnn"),
    order=35,
    build_modules=("pnnx", "ncnn"),
    # Not in quickstart's host sweep: its default LeNet-5 gathers channels with index_select,
    # which pnnx has no ncnn layer for.
    host_target=None,
    note_when_emulated="this machine's CPU running the ncnn model (x86 kernels), not an ARM board",
    tuning="edgecnn.backends.ncnn.tuning",  # what edgecnn tune sweeps
))
