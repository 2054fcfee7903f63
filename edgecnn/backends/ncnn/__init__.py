"""ncnn (Tencent): `.param` + `.bin` pairs converted by pnnx, fp32 and fp16, for ARM boards such as the Pi 5."""

from edgecnn.registry import declared

BACKEND = declared(__name__)  # declared in backend.toml beside this file
