"""PyTorch fp32 reference logits and the eval-mode guard (they live with the exporters, edgecnn.export)."""

from edgecnn.export.torch_eval import eval_mode, torch_logits  # noqa: F401 (re-exported)
