"""ONNX Runtime: `.onnx` files (fp32 and static QDQ int8), CPU execution provider."""

from edgecnn.registry import declared

BACKEND = declared(__name__)  # declared in backend.toml beside this file
