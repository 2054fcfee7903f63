"""Bring your own model: timm:/torchvision: names, factories, torch.export programs and TorchScript files
through export, then verify and bench on the bundle without torch; every bad input one line, exit 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec
from edgecnn.sources import StatedPreprocess, is_foreign, load_source, parse_source, source_name
from runtime_helpers import verify_and_bench_without_torch

SIZE = 32
CLASSES = 7
STATED = ["--input-size", str(SIZE), "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
FAST = ["--warmup", "2", "--iters", "10"]

# A user's own network, in a file of their own: a factory, and the ways a factory goes wrong.
NET_PY = textwrap.dedent(f'''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, classes={CLASSES}):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU6(),
            )
            self.head = nn.Linear(16, classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))


    def build():
        torch.manual_seed(0)
        net = Net()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        return net.train()  # edgecnn must put it in eval mode


    def broken():
        raise ValueError("no weights for this variant")


    def not_a_module():
        return {{"model": 1}}


    def needs_args(depth, width=2):
        return Net()


    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x.mean((2, 3)) + y.mean((2, 3))
''')


def _error_line(result) -> str:
    """The one error line of a failed command (export's stage log lines aside), with no traceback."""
    stderr = getattr(result, "stderr", "") or ""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The user's net as a factory file, its torch.export program, its TorchScript save, and a 2-input net."""
    import importlib.util

    import torch

    folder = tmp_path_factory.mktemp("own-models")
    net_py = folder / "net.py"
    net_py.write_text(NET_PY)
    spec = importlib.util.spec_from_file_location("own_net_for_tests", net_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build().eval()
    example = torch.zeros(2, 3, SIZE, SIZE)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, folder / "net.pt2")
    torch.export.save(torch.export.export(model, (example[:1],)), folder / "net_batch1.pt2")
    # A TorchScript save under a checkpoint-like name: told apart by content.
    torch.jit.save(torch.jit.trace(model, example), folder / "net_scripted.pt")
    torch.jit.save(torch.jit.trace(module.TwoInputs(), (example, example)), folder / "two_inputs.pt")
    torch.save(model.state_dict(), folder / "state.pt")
    (folder / "classes.txt").write_text("".join(f"class{i} a description\n" for i in range(CLASSES)))
    (folder / "short.txt").write_text("".join(f"class{i}\n" for i in range(CLASSES - 2)))
    return {"py": net_py, "pt2": folder / "net.pt2", "pt2_batch1": folder / "net_batch1.pt2",
            "ts": folder / "net_scripted.pt", "two": folder / "two_inputs.pt", "state": folder / "state.pt",
            "classes": folder / "classes.txt", "short": folder / "short.txt", "folder": folder}


def test_parse_tells_the_forms_apart(models, lenet_checkpoint):
    assert parse_source("timm:mobilenetv3_large_100").kind == "timm"
    assert parse_source("torchvision:mnasnet1_0").name == "mnasnet1_0"
    assert parse_source(f"{models['py']}:build").kind == "factory_file"
    assert parse_source("some_pkg.models:build").kind == "factory_module"
    assert parse_source(str(models["pt2"])).kind == "exported_program"
    assert parse_source(str(models["ts"])).kind == "torchscript"  # a .pt name, TorchScript content
    assert source_name(str(models["ts"])) == "net_scripted"
    for zoo_or_checkpoint in ("mobilenet_v2", "lenet5", str(lenet_checkpoint), str(models["state"])):
        assert not is_foreign(zoo_or_checkpoint)


def test_factory_loads_in_eval_mode_with_stated_preprocessing(models):
    loaded = load_source(f"{models['py']}:build", stated=StatedPreprocess(
        input_size=SIZE, mean="0.5,0.5,0.5", std="0.25,0.25,0.25", classes=str(models["classes"])))
    assert not loaded.model.training
    assert loaded.num_classes == CLASSES and loaded.class_names[0] == "class0"
    pre = loaded.preprocess
    assert (pre.size, pre.channels, pre.mean, pre.std) == (SIZE, 3, (0.5,) * 3, (0.25,) * 3)
    assert pre.resize_shorter == round(SIZE / 0.875)
    assert loaded.provenance["source"] == "factory_file" and "path" not in loaded.provenance
    # The recorded field round-trips; a spec without it serialises exactly as before.
    assert PreprocessSpec.from_dict(pre.to_dict()) == pre
    assert "resize_shorter" not in PreprocessSpec(size=8, channels=1, mean=(0.0,), std=(1.0,)).to_dict()
    with_state = load_source(f"{models['py']}:build", state_dict=models["state"],
                             stated=StatedPreprocess(input_size=SIZE, mean="0,0,0", std="1,1,1", resize=40))
    assert with_state.preprocess.resize_shorter == 40 and with_state.provenance["weights"].startswith("file:")


def test_libraries_fill_preprocessing_from_their_configs():
    timm_model = load_source("timm:mobilenetv3_large_100", weights="random")
    assert timm_model.preprocess.size == 224 and timm_model.preprocess.resize_shorter == 256
    assert timm_model.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert not timm_model.accuracy_meaningful and timm_model.num_classes == 1000
    # Flags override the config.
    tv = load_source("torchvision:mnasnet1_0", weights="random", num_classes=10,
                     stated=StatedPreprocess(input_size=64, mean="0.5,0.5,0.5"))
    assert (tv.preprocess.size, tv.preprocess.resize_shorter, tv.num_classes) == (64, 73, 10)
    assert tv.preprocess.mean == (0.5,) * 3 and tv.preprocess.std == pytest.approx((0.229, 0.224, 0.225))


def _export(cli, source: str, out: Path, *extra: str, target: str = "onnx"):
    return cli("export", source, "--target", target, "--out", str(out), "--golden-size", "64", *extra)


@pytest.mark.parametrize("kind", ["py", "pt2", "ts"])
def test_own_model_exports_then_verifies_and_benches_without_torch(kind, models, cli, tmp_path):
    source = f"{models['py']}:build" if kind == "py" else str(models[kind])
    out = tmp_path / f"bundle-{kind}"
    result = _export(cli, source, out, *STATED, "--classes", str(models["classes"]))
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["checkpoint"] is None  # a foreign source is no edgecnn checkpoint
    assert manifest["preprocess"]["resize_shorter"] == round(SIZE / 0.875)
    assert manifest["preprocess"]["class_names"][CLASSES - 1] == f"class{CLASSES - 1}"
    (artifact,) = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert artifact["parity"]["top1_agreement"] >= 0.995
    rows = verify_and_bench_without_torch(out, tmp_path, *FAST)
    assert rows and all(row["torch_imported"] is False for row in rows)


@pytest.mark.parametrize("kind,target", [("py", "x86"), ("py", "arm"), ("pt2", "arm"), ("ts", "arm"), ("ts", "arm-ncnn")])
def test_own_model_exports_to_cpu_targets(kind, target, models, cli, tmp_path):
    source = f"{models['py']}:build" if kind == "py" else str(models[kind])
    out = tmp_path / f"bundle-{kind}-{target}"
    result = _export(cli, source, out, *STATED, target=target)
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    fp32 = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert fp32 and all(a["parity"]["top1_agreement"] >= 0.995 for a in fp32)


def test_torchvision_random_weights_export_offline(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    out = tmp_path / "mnasnet"
    result = cli("export", "torchvision:mnasnet1_0", "--weights", "random", "--target", "x86", "--out", str(out),
                 "--input-size", "64")
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "mnasnet1_0" and manifest["model"]["accuracy_meaningful"] is False
    assert manifest["golden"]["labels_meaningful"] is False  # agreement-only golden set from noise


def test_info_on_a_timm_name_offline(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    result = cli("info", "timm:mobilenetv3_large_100", "--json", str(tmp_path / "info.json"))
    assert result.exit_code == 0, result.stderr
    payload = json.loads((tmp_path / "info.json").read_text())
    assert payload["num_classes"] == 1000 and payload["input_size"] == [3, 224, 224]
    assert 5_000_000 < payload["total_params"] < 6_000_000


def test_imagenet_weights_offline_are_refused_not_downloaded(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    result = _export(cli, "timm:mobilenetv3_small_050", tmp_path / "b", "--weights", "imagenet")
    assert result.exit_code == 2
    assert "cannot download" in _error_line(result) and "--weights random" in _error_line(result)


def _bad(models) -> list[tuple[list[str], str]]:
    py, folder = models["py"], models["folder"]
    return [
        ([f"{py}:broken", *STATED], "raised ValueError: no weights for this variant"),
        ([f"{py}:not_a_module", *STATED], "returned a dict, not a torch.nn.Module"),
        ([f"{py}:needs_args", *STATED], "requires argument(s) depth"),
        ([f"{py}:nowhere", *STATED], "has no function 'nowhere'"),
        ([f"{folder / 'missing.py'}:build", *STATED], "no such Python file"),
        ([str(folder / "missing.pt2"), *STATED], "no such torch.export program"),
        ([f"{py}:build"], "pass --input-size S --mean a,b,c --std a,b,c"),
        ([str(models["ts"]), "--input-size", "32"], "pass --mean a,b,c --std a,b,c"),
        ([str(models["two"]), *STATED], "does not take one image tensor"),
        ([str(models["pt2_batch1"]), *STATED], "runs on a batch of 1 but not of 2"),
        ([f"{py}:build", "--input-size", "32", "--mean", "0.5,0.5", "--std", "1,1,1"], "--mean has 2 value(s)"),
        ([f"{py}:build", *STATED, "--classes", str(models["short"])], "lists 5 classes but the model has 7"),
        (["timm:mobilenetv3_large_10", "--weights", "random"], "did you mean timm:mobilenetv3_large_100"),
        (["torchvision:mnasnet1_0x", "--weights", "random"], "did you mean torchvision:mnasnet1_0"),
        (["mobilenet_v2", "--mean", "0.5,0.5,0.5"], "--mean describe a foreign model"),
        ([str(models["pt2"]), *STATED, "--weights", "random"], "--weights goes with a zoo"),
    ]


def test_bad_inputs_exit_2_with_one_line(models, cli, tmp_path):
    garbage = models["folder"] / "garbage.pt2"
    garbage.write_bytes(b"not a zip at all")
    cases = _bad(models) + [([str(garbage), *STATED], "cannot read")]
    for index, (args, expected) in enumerate(cases):
        result = _export(cli, args[0], tmp_path / f"bad{index}", *args[1:])
        assert result.exit_code == 2, (args, result.stderr, result.stdout)
        assert expected in _error_line(result), (args, result.stderr)
        assert not (tmp_path / f"bad{index}").exists()


def test_library_errors_in_the_api():
    with pytest.raises(BadInputError, match="needs a model name"):
        load_source("timm:")
    with pytest.raises(BadInputError, match="--channels must be 1 or 3"):
        load_source("torchvision:mnasnet1_0", weights="random", stated=StatedPreprocess(channels=2))


def test_eval_takes_your_own_model_with_stated_preprocessing(cli, tmp_path):
    factory = tmp_path / "digits_net.py"
    factory.write_text(
        "from torch import nn\n\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(8, 10))\n")
    report = tmp_path / "eval.json"
    result = cli("eval", f"{factory}:build", "--data", "digits", *STATED, "--json", str(report))
    assert result.exit_code == 0, result.stderr + result.stdout
    payload = json.loads(report.read_text())
    assert payload["model"] == "digits_net_build" and payload["samples"] > 100
    assert 0.0 <= payload["top1"] <= 100.0 and payload["top1"] <= payload["top5"]
    assert payload["preprocess"]["size"] == SIZE and payload["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    # Without its preprocessing the model is refused, naming the flags; --input-size is not for zoo names.
    refused = cli("eval", f"{factory}:build", "--data", "digits")
    assert refused.exit_code == 2 and "--input-size" in _error_line(refused)
    zoo = cli("eval", "lenet5", "--data", "digits", "--weights", "random", "--input-size", "32")
    assert zoo.exit_code == 2 and "--input-size" in _error_line(zoo)
