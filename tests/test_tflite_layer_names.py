"""TFLite ops named by PyTorch module path: litert-torch writes type paths (`Net/Block_0/Conv2d_proj`),
export rebuilds them from the model so explain and the manifest say `blocks.0.proj`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.act = nn.ReLU6()
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x + self.proj(self.act(self.conv_dw(x)))


class Net(nn.Module):
    """A Sequential stem (called), a ModuleList of blocks (only iterated: not in litert's call paths)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6())
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))


def test_call_paths_resolve_to_module_paths_skipping_iterated_containers():
    from edgecnn.backends.tflite.sensitivity import module_keys, resolve

    keys = module_keys(Net())
    here = f"{__name__}"
    block = f"{here}.Net/{here}.Block_1"
    assert keys[f"{block}/torch.nn.modules.conv.Conv2d_proj"] == "blocks.1.proj"
    assert keys[f"{here}.Net/torch.nn.modules.container.Sequential_stem/torch.nn.modules.conv.Conv2d_0"] == "stem.0"
    assert "blocks" not in keys.values()  # the ModuleList never runs a forward of its own
    fused = (f"{block}/torch.nn.modules.activation.ReLU6_act;;{block}/torch.nn.modules.conv.Conv2d_conv_dw;")
    assert resolve(fused, keys, {"blocks.1.conv_dw"}) == "blocks.1.conv_dw"  # the conv wins over its ReLU6
    assert resolve("serving_default_output_0", keys) is None


def test_a_converted_int8_file_names_its_ops_by_module_path(tmp_path):
    pytest.importorskip("litert_torch")
    from edgecnn.backends.tflite.names import layer_names as _layer_names, module_layers as _module_layers
    from edgecnn.backends.tflite.convert import export_tflite
    from edgecnn.backends.tflite.sensitivity import tflite_layers

    torch.manual_seed(0)
    model = Net().eval()
    calibration = np.random.default_rng(0).random((16, 3, 32, 32), dtype=np.float32)
    fp32 = export_tflite(model, (3, 32, 32), tmp_path / "fp32.tflite", precision="fp32")
    int8 = export_tflite(model, (3, 32, 32), tmp_path / "int8.tflite", precision="int8", calibration=calibration,
                         int8_scheme="full-integer")
    ops = tflite_layers(int8.path, fp32.path, calibration[:2])
    names = _layer_names(model, ops)
    weighted = [names.get(op.node) for op in ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert weighted == ["stem.0", "blocks.0.conv_dw", "blocks.0.proj", "blocks.1.conv_dw", "blocks.1.proj", "fc"]
    layers = _module_layers(model, ops)
    assert [layer.node for layer in layers] == weighted
    assert all(layer.sqnr_db is not None and layer.sqnr_db > 5 for layer in layers)  # int8 vs fp32, measured
