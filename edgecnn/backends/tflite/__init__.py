"""TFLite / LiteRT: `.tflite` files (fp32, fp16, full-integer or weight-only int8) for ARM boards."""

from edgecnn.registry import declared

BACKEND = declared(__name__)  # declared in backend.toml beside this file
