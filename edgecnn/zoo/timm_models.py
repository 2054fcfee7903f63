"""The architectures torchvision lacks but timm has, registered on timm's builders (its weights load)."""

from __future__ import annotations

from edgecnn.zoo.registry import add_spec, ModelSpec

# These three were trained with TensorFlow's Inception preprocessing: mean = std = 0.5.
_TF_INCEPTION_NORM = (0.5, 0.5, 0.5)


def _timm_builder(arch: str):
    def build(num_classes: int = 1000):
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=num_classes)

    build.__name__ = arch
    return build


# edgecnn name, timm architecture, family, default side, smallest side, weights tag, paper.
# timm's `legacy_xception` is the original Xception of the paper (entry, 8 middle, exit flows;
# 22.9 M parameters); timm's plain `xception41/65/71` are the later "aligned" DeepLab variants.
_TIMM = [
    ("xception", "legacy_xception", "lightweight", 299, 32, "legacy_xception.tf_in1k", "Chollet 2017"),
    ("inception_v4", "inception_v4", "baseline", 299, 75, "inception_v4.tf_in1k", "Szegedy et al. 2016"),
    ("inception_resnet_v2", "inception_resnet_v2", "baseline", 299, 75, "inception_resnet_v2.tf_in1k",
     "Szegedy et al. 2016"),
]

for _name, _arch, _family, _side, _min_side, _weights, _paper in _TIMM:
    add_spec(
        ModelSpec(
            name=_name,
            family=_family,
            builder=_timm_builder(_arch),
            input_size=(3, _side, _side),
            min_size=_min_side,
            source="timm",
            reference=_paper,
            weights=f"timm:{_weights}",
            mean=_TF_INCEPTION_NORM,
            std=_TF_INCEPTION_NORM,
        )
    )
