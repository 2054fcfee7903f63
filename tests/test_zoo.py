"""The zoo: every registered model builds and runs, matches its published figures, and the
registry refuses what it should."""

from __future__ import annotations

import json

import pytest
import torch

from edgecnn.errors import RegistryError, UnknownModelError
from edgecnn.zoo import (
    aliases_of,
    get_spec,
    list_specs,
    register_alias,
    register_model,
    resolve_name,
    unregister_model,
)
from edgecnn.zoo.profile import profile_model, profile_spec

EXPECTED_NAMES = {
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "shufflenet_v1_g3", "shufflenet_v1_g8", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "squeezenet1_0", "squeezenet1_1", "xception",
    "lenet5", "alexnet", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "googlenet", "inception_v3", "inception_v4", "inception_resnet_v2",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
    "densenet121", "densenet169", "densenet201",
}
LIGHTWEIGHT = {n for n in EXPECTED_NAMES if n.startswith(("mobilenet", "shufflenet", "squeezenet", "xception"))}
ALIASES = {
    "mobilenet": "mobilenet_v2", "shufflenet": "shufflenet_v2_x1_0", "squeezenet": "squeezenet1_1",
    "resnet": "resnet50", "vgg": "vgg16", "densenet": "densenet121", "inception": "inception_v3",
    "lenet": "lenet5",
}


def test_every_name_is_registered_with_its_family():
    specs = {s.name: s for s in list_specs()}
    assert set(specs) == EXPECTED_NAMES
    for name, spec in specs.items():
        assert spec.family == ("lightweight" if name in LIGHTWEIGHT else "baseline"), name


@pytest.mark.parametrize("alias,target", sorted(ALIASES.items()))
def test_aliases_resolve(alias, target):
    assert resolve_name(alias) == target
    assert get_spec(alias).name == target
    assert alias in aliases_of(target)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_builds_and_runs_at_smallest_input(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    model = spec.build(num_classes=10).eval()
    side = spec.min_size
    with torch.inference_mode():
        logits = model(torch.randn(2, spec.channels, side, side))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    # And below the recorded minimum, the fixed-size heads really do fail: the floor is honest.
    if name in {"alexnet", "inception_v3", "inception_v4", "inception_resnet_v2", "lenet5", "vgg16"}:
        with pytest.raises(Exception), torch.inference_mode():
            model(torch.randn(1, spec.channels, side - 1, side - 1))


def _torchvision_published(name):
    import torchvision

    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    return meta["num_params"], meta["_ops"] * 1e9  # torchvision's "GFLOPS" are multiply-adds


TORCHVISION_NAMES = sorted(s.name for s in list_specs() if s.source == "torchvision")


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_models_match_published_figures(name):
    params, macs = _torchvision_published(name)
    profile = profile_spec(get_spec(name))
    if name == "inception_v3":
        # torchvision's table counts the training-only auxiliary head we drop at build time.
        import torchvision

        with torch.device("meta"):
            with_aux = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        aux = sum(p.numel() for p in with_aux.AuxLogits.parameters())
        assert profile.total_params == params - aux
    else:
        assert profile.total_params == params
    # torchvision rounds GFLOPS to 2-3 decimals: compare within 2 % (or the rounding step).
    assert abs(profile.total_macs - macs) <= max(0.02 * macs, 0.5e7), (profile.total_macs, macs)


# Figures from the papers and timm's model cards (params exact where published, else ~2 %).
PAPER_FIGURES = {
    # name: (params, MACs)
    "mobilenet_v1": (4.2e6, 569e6),  # Howard et al. 2017, Table 8 (1.0 MobileNet-224)
    "shufflenet_v1_g3": (None, 140e6),  # Zhang et al. 2017, Table 2 (ShuffleNet 1x)
    "shufflenet_v1_g8": (None, 140e6),
    "xception": (22.9e6, None),  # Chollet 2017, section 4.5 / timm legacy_xception card
    "inception_v4": (42.7e6, 12.3e9),  # timm inception_v4.tf_in1k card
    "inception_resnet_v2": (55.8e6, 13.2e9),  # timm inception_resnet_v2.tf_in1k card
    "lenet5": (None, None),  # per-layer figures: see test_lenet5_layer_parameters
}


@pytest.mark.parametrize("name", sorted(k for k, v in PAPER_FIGURES.items() if any(v)))
def test_models_match_paper_figures(name):
    params, macs = PAPER_FIGURES[name]
    profile = profile_spec(get_spec(name))
    if params:
        assert abs(profile.total_params - params) <= 0.02 * params, profile.total_params
    if macs:
        assert abs(profile.total_macs - macs) <= 0.02 * macs, profile.total_macs


def test_lenet5_layer_parameters():
    profile = profile_spec(get_spec("lenet5"), num_classes=10)
    by_name = {layer.name: layer.params for layer in profile.layers}
    assert by_name["c1"] == 156
    assert by_name["c3"] == 1516
    assert by_name["c5"] == 48120
    assert by_name["f6"] == 10164


def test_profile_counts_match_a_hand_computed_network():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),  # 8*32*32 outputs * 27 MACs = 221,184
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 8*32*32 * 9 = 73,728
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),  # 40
    )
    profile = profile_model(net, (3, 32, 32))
    assert profile.total_macs == 221_184 + 73_728 + 40
    assert profile.total_params == (8 * 27 + 8) + (8 * 9 + 8) + (8 * 5 + 5)
    assert [layer.output_shape for layer in profile.layers][0] == [8, 32, 32]


def test_registry_refuses_duplicates_and_bad_aliases():
    def tiny(num_classes=1000):
        return torch.nn.Linear(4, num_classes)

    register_model("tiny_test_net", family="baseline", input_size=(1, 8, 8), min_size=8,
                   source="edgecnn", reference="test")(tiny)
    try:
        with pytest.raises(RegistryError, match="already registered"):
            register_model("tiny_test_net", family="baseline", input_size=(1, 8, 8), min_size=8,
                           source="edgecnn", reference="test")(tiny)
        with pytest.raises(RegistryError):
            register_model("mobilenet", family="baseline", input_size=(1, 8, 8), min_size=8,
                           source="edgecnn", reference="test")(tiny)  # taken by an alias
        with pytest.raises(RegistryError):
            register_alias("resnet", "tiny_test_net")  # alias already taken
        with pytest.raises(RegistryError):
            register_alias("tiny_alias", "no_such_model")
        with pytest.raises(RegistryError, match="family"):
            register_model("tiny_test_net2", family="medium", input_size=(1, 8, 8), min_size=8,
                           source="edgecnn", reference="test")(tiny)
    finally:
        unregister_model("tiny_test_net")
    assert "tiny_test_net" not in {s.name for s in list_specs()}


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownModelError, match="did you mean mobilenet_v2"):
        resolve_name("mobilenetv2")
    with pytest.raises(UnknownModelError, match="resnet18"):
        resolve_name("resnet-19")


def test_input_size_rule_is_larger_of_data_and_minimum():
    spec = get_spec("mobilenet_v2")
    assert spec.input_size_for(8) == 32
    assert spec.input_size_for(64) == 64


# ---- CLI ---------------------------------------------------------------------------------


def test_cli_models_json_lists_every_name(cli, tmp_path):
    out = tmp_path / "m.json"
    result = cli("models", "--json", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["models"]
    assert {row["name"] for row in rows} == EXPECTED_NAMES
    by_name = {row["name"]: row for row in rows}
    assert by_name["mobilenet_v2"]["params"] == 3_504_872
    assert by_name["mobilenet_v2"]["input_size"] == [3, 224, 224]
    assert by_name["mobilenet_v2"]["aliases"] == ["mobilenet"]
    assert by_name["lenet5"]["family"] == "baseline"
    assert set(by_name["resnet18"]) >= {"name", "family", "params", "macs", "input_size", "aliases"}
    assert "mobilenet_v2" in result.stdout


def test_cli_info_lenet5_shows_paper_layers(cli, tmp_path):
    out = tmp_path / "l.json"
    result = cli("info", "lenet5", "--json", str(out))
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    params = {layer["name"]: layer["params"] for layer in payload["layers"]}
    assert (params["c1"], params["c3"], params["c5"], params["f6"]) == (156, 1516, 48120, 10164)
    assert payload["total_params"] == sum(params.values())
    assert payload["total_macs"] > 0
    assert "1,516" in result.stdout


def test_cli_info_alias_is_reported_and_size_respected(cli, tmp_path):
    out = tmp_path / "i.json"
    result = cli("info", "mobilenet", "--input-size", "64", "--num-classes", "10", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "mobilenet -> mobilenet_v2" in result.stderr
    payload = json.loads(out.read_text())
    assert payload["input_size"] == [3, 64, 64]
    assert payload["layers"][-1]["output_shape"] == [10]


def test_cli_unknown_model_exits_2_with_suggestion(cli):
    result = cli("info", "nosuchnet")
    assert result.exit_code == 2
    assert "unknown model 'nosuchnet'" in result.stderr
    assert "did you mean" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_input_below_minimum_exits_2(cli):
    result = cli("info", "alexnet", "--input-size", "32")
    assert result.exit_code == 2
    assert "at least 63" in result.stderr


def test_recipes_live_on_the_registration_and_unknown_keys_are_refused():
    from edgecnn.zoo import MODEL_RECIPES, RECIPE_KEYS, recipe_of

    assert recipe_of("squeezenet")["head_init"] == "kaiming"  # an alias reaches its model's recipe
    assert recipe_of("lenet5") == {} and "lenet5" not in MODEL_RECIPES
    assert get_spec("mobilenet_v3_small").recipe == {"bn_momentum": 0.1}
    assert all(set(recipe) <= set(RECIPE_KEYS) for recipe in MODEL_RECIPES.values())
    with pytest.raises(RegistryError, match="unknown recipe key"):
        register_model("tiny_recipe_net", family="baseline", input_size=(1, 8, 8), min_size=8, source="edgecnn",
                       reference="test", recipe={"learning_rate": 0.1})(lambda num_classes=10: None)
    assert "tiny_recipe_net" not in {spec.name for spec in list_specs()}
    register_model("tiny_recipe_net", family="baseline", input_size=(1, 8, 8), min_size=8, source="edgecnn",
                   reference="test", recipe={"epochs": 3})(lambda num_classes=10: None)
    try:
        assert MODEL_RECIPES["tiny_recipe_net"] == {"epochs": 3}
        del MODEL_RECIPES["tiny_recipe_net"]  # back to the default recipe
        assert recipe_of("tiny_recipe_net") == {}
        with pytest.raises(KeyError):
            del MODEL_RECIPES["tiny_recipe_net"]
    finally:
        unregister_model("tiny_recipe_net")


def test_commands_without_torch_exit_2_naming_the_extra(tmp_path):
    """models, info and eval where `import torch` fails: one line, exit 2, the torch extra named."""
    from runtime_helpers import blocking_env, run_cli

    env = blocking_env(tmp_path, "torch")
    for args in (("models",), ("info", "lenet5"), ("eval", "lenet5", "--data", "digits")):
        result = run_cli(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr)
        assert "pip install 'edgecnn[torch]'" in lines[0], (args, lines)
    # An unwritable --json is refused before anything else, torch or not.
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    for args in (("models",), ("info", "lenet5"), ("eval", "lenet5", "--data", "digits")):
        result = run_cli(*args, "--json", str(not_a_folder / "x.json"), env=env)
        assert result.returncode == 2 and "--json" in result.stderr and "not a directory" in result.stderr, result.stderr
