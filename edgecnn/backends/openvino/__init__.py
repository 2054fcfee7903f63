"""OpenVINO: `.xml` + `.bin` IR (fp32, fp16, NNCF int8) on Intel/AMD CPUs."""

from edgecnn.registry import declared

BACKEND = declared(__name__)  # declared in backend.toml beside this file
