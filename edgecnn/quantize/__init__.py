"""INT8 quantization, one backend module per runtime (onnxruntime_int8, openvino_nncf, ...).

Import the submodule you need; this package imports nothing heavy.
"""
