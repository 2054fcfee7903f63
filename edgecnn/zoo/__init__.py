"""The model zoo: every architecture edgecnn deploys, by name.

Importing this package registers every family explicitly (no import errors are swallowed), so a
broken family fails loudly instead of silently vanishing from `edgecnn models`.
"""

from edgecnn.zoo.registry import (
    MODEL_RECIPES,
    RECIPE_KEYS,
    ModelSpec,
    add_spec,
    aliases_of,
    build_model,
    get_spec,
    list_specs,
    recipe_of,
    register_alias,
    register_model,
    resolve_name,
    set_recipe,
    unregister_model,
)

# Registration order is the order `edgecnn models` prints: lightweight family first.
from edgecnn.zoo import mobilenet_v1  # noqa: E402,F401  (registers)
from edgecnn.zoo import torchvision_models  # noqa: E402,F401
from edgecnn.zoo import shufflenet_v1  # noqa: E402,F401
from edgecnn.zoo import timm_models  # noqa: E402,F401
from edgecnn.zoo import lenet  # noqa: E402,F401

for _alias, _target in {
    "mobilenet": "mobilenet_v2",
    "shufflenet": "shufflenet_v2_x1_0",
    "squeezenet": "squeezenet1_1",
    "resnet": "resnet50",
    "vgg": "vgg16",
    "densenet": "densenet121",
    "inception": "inception_v3",
    "lenet": "lenet5",
}.items():
    register_alias(_alias, _target)

__all__ = [
    "MODEL_RECIPES",
    "RECIPE_KEYS",
    "ModelSpec",
    "add_spec",
    "aliases_of",
    "build_model",
    "get_spec",
    "list_specs",
    "recipe_of",
    "register_alias",
    "register_model",
    "resolve_name",
    "set_recipe",
    "unregister_model",
]
