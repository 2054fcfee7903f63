"""Layer names as the user knows them: the PyTorch module path behind an ONNX / IR / TFLite node name.

torch.onnx names each node after the module that made it, one path component per module level and the
op last: `/features/3/conv/0/Conv` is module `features.3.conv.0`; `/_blocks.5/_depthwise_conv/Conv` is
`_blocks.5._depthwise_conv`. OpenVINO keeps the ONNX name and may add a suffix (`/WithoutBiases`).
A name without that shape (a hand-made ONNX file) is its own user name.
"""

from __future__ import annotations

# Suffixes the OpenVINO conversion appends to an ONNX node's name.
_CONVERTER_SUFFIXES = ("/WithoutBiases", "/fq_weights_1", "/fq_input_0")


def module_path(node_name: str) -> str:
    """The PyTorch module path behind a node name ('/features/3/conv/0/Conv' -> 'features.3.conv.0')."""
    name = node_name
    for suffix in _CONVERTER_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not name.startswith("/"):
        return node_name
    parts = [p for p in name.split("/") if p]
    if len(parts) < 2:
        return node_name
    modules: list[str] = []
    previous = ""
    for part in parts[:-1]:
        # Older exporters scope a child by its dotted name under its parent ('features.3' under 'features').
        modules.append(part[len(previous) + 1:] if previous and part.startswith(previous + ".") else part)
        previous = part
    return ".".join(modules)
