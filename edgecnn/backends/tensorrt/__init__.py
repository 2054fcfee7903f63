"""TensorRT: engines built on the Jetson/CUDA device from the bundle's ONNX graphs (fp32, fp16, Q/DQ int8)."""

from edgecnn.registry import declared

BACKEND = declared(__name__)  # declared in backend.toml beside this file
