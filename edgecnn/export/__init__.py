"""Exporters shared by every backend: PyTorch -> ONNX (the graph most runtimes build from).

Import the submodule you need; this package imports nothing heavy.
"""
