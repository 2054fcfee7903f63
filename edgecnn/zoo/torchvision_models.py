"""The architectures torchvision already has: registered on its builders so its published weights load."""

from __future__ import annotations

from edgecnn.zoo.registry import add_spec, ModelSpec


def _torchvision_builder(arch: str, **fixed):
    def build(num_classes: int = 1000):
        import torchvision

        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **fixed)

    build.__name__ = arch
    return build


# name, family, default input (C, H, W), smallest input side, weights enum member, paper.
# Smallest sides: AlexNet (63), VGG (32) and Inception v3 (75) fail below them (run at shrinking
# square inputs). The fully padded networks run at any size but collapse to 1x1 features below
# their total stride of 32, so 32 is their floor.
# GoogLeNet and Inception v3 are built without their auxiliary classifiers: those heads only
# help training on ImageNet and are dropped at inference (torchvision drops them too when
# loading weights with aux_logits=False).
_TORCHVISION = [
    ("mobilenet_v2", "lightweight", 224, 32, "MobileNet_V2_Weights.IMAGENET1K_V1", "Sandler et al. 2018", {}),
    ("mobilenet_v3_large", "lightweight", 224, 32, "MobileNet_V3_Large_Weights.IMAGENET1K_V1", "Howard et al. 2019", {}),
    ("mobilenet_v3_small", "lightweight", 224, 32, "MobileNet_V3_Small_Weights.IMAGENET1K_V1", "Howard et al. 2019", {}),
    ("shufflenet_v2_x0_5", "lightweight", 224, 32, "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1", "Ma et al. 2018", {}),
    ("shufflenet_v2_x1_0", "lightweight", 224, 32, "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1", "Ma et al. 2018", {}),
    ("squeezenet1_0", "lightweight", 224, 32, "SqueezeNet1_0_Weights.IMAGENET1K_V1", "Iandola et al. 2016", {}),
    ("squeezenet1_1", "lightweight", 224, 32, "SqueezeNet1_1_Weights.IMAGENET1K_V1", "Iandola et al. 2016", {}),
    ("alexnet", "baseline", 224, 63, "AlexNet_Weights.IMAGENET1K_V1", "Krizhevsky et al. 2012", {}),
    ("vgg11", "baseline", 224, 32, "VGG11_Weights.IMAGENET1K_V1", "Simonyan & Zisserman 2014", {}),
    ("vgg11_bn", "baseline", 224, 32, "VGG11_BN_Weights.IMAGENET1K_V1", "Simonyan & Zisserman 2014", {}),
    ("vgg16", "baseline", 224, 32, "VGG16_Weights.IMAGENET1K_V1", "Simonyan & Zisserman 2014", {}),
    ("vgg16_bn", "baseline", 224, 32, "VGG16_BN_Weights.IMAGENET1K_V1", "Simonyan & Zisserman 2014", {}),
    ("vgg19", "baseline", 224, 32, "VGG19_Weights.IMAGENET1K_V1", "Simonyan & Zisserman 2014", {}),
    ("vgg19_bn", "baseline", 224, 32, "VGG19_BN_Weights.IMAGENET1K_V1", "Simonyan & Zisserman 2014", {}),
    ("googlenet", "baseline", 224, 32, "GoogLeNet_Weights.IMAGENET1K_V1", "Szegedy et al. 2014",
     {"aux_logits": False, "init_weights": True}),
    ("inception_v3", "baseline", 299, 75, "Inception_V3_Weights.IMAGENET1K_V1", "Szegedy et al. 2015",
     {"aux_logits": False, "init_weights": True}),
    ("resnet18", "baseline", 224, 32, "ResNet18_Weights.IMAGENET1K_V1", "He et al. 2015", {}),
    ("resnet34", "baseline", 224, 32, "ResNet34_Weights.IMAGENET1K_V1", "He et al. 2015", {}),
    ("resnet50", "baseline", 224, 32, "ResNet50_Weights.IMAGENET1K_V1", "He et al. 2015", {}),
    ("resnet101", "baseline", 224, 32, "ResNet101_Weights.IMAGENET1K_V1", "He et al. 2015", {}),
    ("resnet152", "baseline", 224, 32, "ResNet152_Weights.IMAGENET1K_V1", "He et al. 2015", {}),
    ("resnext50_32x4d", "baseline", 224, 32, "ResNeXt50_32X4D_Weights.IMAGENET1K_V1", "Xie et al. 2016", {}),
    ("densenet121", "baseline", 224, 32, "DenseNet121_Weights.IMAGENET1K_V1", "Huang et al. 2016", {}),
    ("densenet169", "baseline", 224, 32, "DenseNet169_Weights.IMAGENET1K_V1", "Huang et al. 2016", {}),
    ("densenet201", "baseline", 224, 32, "DenseNet201_Weights.IMAGENET1K_V1", "Huang et al. 2016", {}),
]

for _name, _family, _side, _min_side, _weights, _paper, _fixed in _TORCHVISION:
    add_spec(
        ModelSpec(
            name=_name,
            family=_family,
            builder=_torchvision_builder(_name, **_fixed),
            input_size=(3, _side, _side),
            min_size=_min_side,
            source="torchvision",
            reference=_paper,
            weights=f"torchvision:{_weights}",
        )
    )
