"""Exporters, one module per format (onnx, openvino, tflite, tensorrt).

Import the submodule you need; this package imports nothing heavy.
"""
