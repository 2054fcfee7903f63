"""PyTorch eager: the fp32 baseline bench and verify compare against (never an export target)."""

from edgecnn.registry import declared

BACKEND = declared(__name__)  # declared in backend.toml beside this file
