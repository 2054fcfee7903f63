"""`edgecnn train` and `edgecnn eval` end to end on real data (digits, and IDX files written here).

Few epochs of LeNet-5 keep this short; the full recipe's accuracy and time per model are measured by
benchmarks/train_digits.py.
"""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
import torch

from edgecnn.errors import BadInputError

torch.set_num_threads(1)
THREADS = "1"


def _error_line(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


def _idx_folder(folder, n_train=240, n_test=60, side=12, classes=4):
    """A small learnable IDX dataset: the class decides which row carries a bright stroke."""
    import struct

    def write(path, array):
        payload = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
        path.write_bytes(payload + np.ascontiguousarray(array, np.uint8).tobytes())

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % classes).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, side, side)).astype(np.uint8)
        for i, label in enumerate(labels):
            row = 2 + 2 * int(label) + int(rng.integers(0, 2))
            images[i, row, 2 : side - 2] = 255
        write(folder / f"{prefix}-images-idx3-ubyte", images)
        write(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def test_train_lenet_on_digits_then_eval(tmp_path, cli):
    out = tmp_path / "lenet"
    result = cli("train", "lenet", "--data", "digits", "--epochs", "3", "--out", str(out), "--threads", THREADS)
    assert result.exit_code == 0, result.stderr
    assert "lenet -> lenet5" in result.stderr  # the alias is resolved loudly
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]  # last.pt gone: run complete

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "lenet5" and metrics["epochs_completed"] == 3 and len(metrics["history"]) == 3
    assert metrics["test_top1"] >= 80.0  # 3 epochs: far above the 10 % of chance, short of the full recipe
    assert metrics["test_top5"] >= metrics["test_top1"]
    assert metrics["optimizer"] == "AdamW" and metrics["schedule"] == "one-cycle"
    assert metrics["preprocess"]["size"] == 32 and metrics["preprocess"]["channels"] == 1
    best = max(h["val_top1"] for h in metrics["history"])
    assert metrics["best_val_top1"] == best

    checkpoint = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert checkpoint["arch"] == "lenet5" and checkpoint["num_classes"] == 10
    assert checkpoint["metrics"]["test_top1"] == metrics["test_top1"]

    report = tmp_path / "eval.json"
    result = cli("eval", str(out), "--data", "digits", "--json", str(report))
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(report.read_text())
    from edgecnn.data import load_data

    assert evaluation["split"] == "test" and evaluation["samples"] == len(load_data("digits").test)
    # The same weights, the same test split and the same preprocessing: the same numbers.
    assert evaluation["top1"] == pytest.approx(metrics["test_top1"], abs=1e-3)
    assert evaluation["top5"] == pytest.approx(metrics["test_top5"], abs=1e-3)
    assert "top-1" in result.stdout and "top-5" in result.stdout

    # An existing result is never overwritten without --force.
    result = cli("train", "lenet5", "--data", "digits", "--epochs", "1", "--out", str(out))
    assert result.exit_code == 2 and "--force" in _error_line(result)


def test_resume_continues_an_interrupted_run_on_idx_data(tmp_path, cli):
    from edgecnn.train import TrainConfig, train

    data = f"idx:{_idx_folder(tmp_path / 'idx')}"
    out = tmp_path / "run"
    config = TrainConfig(model="lenet5", data=data, out_dir=str(out), epochs=3, batch_size=32, threads=1)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, on_epoch=stop_after_first)
    assert (out / "last.pt").is_file() and (out / "model.pt").is_file()
    assert json.loads((out / "metrics.json").read_text())["history"][0]["epoch"] == 1

    result = cli("train", "lenet5", "--data", data, "--out", str(out), "--resume", "--threads", THREADS)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["config"]["batch_size"] == 32  # the saved recipe, not the CLI defaults
    assert not (out / "last.pt").exists()
    assert metrics["test_top1"] >= 60.0  # a stroke per class: learnt within three short epochs
    result = cli("train", "lenet5", "--data", data, "--out", str(out), "--resume")
    assert result.exit_code == 2 and "nothing to resume" in _error_line(result)


def test_start_from_a_state_dict_and_refuse_a_foreign_one(tmp_path, cli):
    import torchvision

    from edgecnn.zoo import build_model

    data = f"idx:{_idx_folder(tmp_path / 'idx', n_train=60, n_test=20)}"
    own = tmp_path / "lenet.pth"
    torch.save(build_model("lenet5", num_classes=7).state_dict(), own)  # another class count: head re-initialised
    result = cli("train", "lenet5", "--data", data, "--state-dict", str(own), "--epochs", "1",
                 "--out", str(tmp_path / "ft"), "--threads", THREADS)
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["init"] == f"file:{own}" and metrics["preprocess"]["normalization"] == "model"

    foreign = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=4).state_dict(), foreign)
    result = cli("train", "lenet5", "--data", data, "--state-dict", str(foreign), "--epochs", "1",
                 "--out", str(tmp_path / "bad"))
    assert result.exit_code == 2 and "wrong architecture" in _error_line(result)
    result = cli("eval", "lenet5", "--state-dict", str(foreign), "--data", data)
    assert result.exit_code == 2 and "wrong architecture" in _error_line(result)


def test_bad_input_is_one_line_and_exit_2(tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "no_images"
    (no_images / "cat").mkdir(parents=True)
    cases = [
        (("train", "lenet5", "--data", "svhn"), "unknown data SPEC"),
        (("train", "lenet5", "--data", f"idx:{tmp_path / 'missing'}"), "does not exist"),
        (("train", "lenet5", "--data", f"imagefolder:{tmp_path / 'missing'}"), "does not exist"),
        (("train", "lenet5", "--data", f"imagefolder:{empty}"), "no class sub-folders"),
        (("train", "lenet5", "--data", f"imagefolder:{no_images}"), "has no images"),
        (("train", "lenet5", "--data", f"idx:{empty}"), "no IDX pair"),
        (("train", "nosuchnet", "--data", "digits"), "unknown model"),
        (("train", "lenet5", "--data", "digits", "--epochs", "0"), "--epochs"),
        (("train", "lenet5", "--data", "digits", "--resume", "--force"), "either --resume or --force"),
        (("eval", str(tmp_path / "missing" / "model.pt"), "--data", "digits"), "no such checkpoint"),
        (("eval", str(empty), "--data", "digits"), "without model.pt"),
        (("eval", "lenet5", "--weights", "random"), "--data SPEC is needed"),
    ]
    for args, expected in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert expected in _error_line(result), (args, result.stderr)
    assert not any(tmp_path.rglob("model.pt"))


def test_imagenet_weights_offline_fail_fast_through_the_cli(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    started = time.perf_counter()
    result = cli("eval", "squeezenet1_1", "--weights", "imagenet", "--data", "digits")
    assert time.perf_counter() - started < 30
    line = _error_line(result)
    assert result.exit_code == 2 and str(tmp_path / "torch" / "hub" / "checkpoints") in line
    result = cli("train", "squeezenet1_1", "--weights", "imagenet", "--data", "digits", "--out", str(tmp_path / "t"))
    assert result.exit_code == 2 and "offline" in _error_line(result)


def test_augmentation_is_seeded_and_identity_when_switched_down():
    from edgecnn.train import TrainConfig, augment_batch

    inputs = torch.rand(4, 1, 16, 16)
    config = TrainConfig(model="lenet5", data="digits")
    first = augment_batch(inputs, torch.Generator().manual_seed(5), config, hflip=False)
    again = augment_batch(inputs, torch.Generator().manual_seed(5), config, hflip=False)
    assert first.shape == inputs.shape and torch.equal(first, again)
    assert not torch.allclose(first, inputs)
    still = TrainConfig(model="lenet5", data="digits", max_shift=0.0, max_rotation=0.0, max_scale=0.0)
    torch.testing.assert_close(augment_batch(inputs, torch.Generator().manual_seed(5), still, hflip=False), inputs)
    with pytest.raises(BadInputError, match="--batch-size"):
        TrainConfig(model="lenet5", data="digits", batch_size=0).validate()


def test_model_recipe_keys_are_applied(monkeypatch):
    """Recipes registered with the models reach the config and the from-scratch init; no training run needed."""
    import torchvision

    from edgecnn import train as train_module
    from edgecnn.train import DEFAULT_EPOCHS, DEFAULT_LR, TrainConfig, apply_recipe_init, head_layer
    from edgecnn.zoo import MODEL_RECIPES as MODEL_RECIPE  # a live view: setting an entry re-registers the recipe

    # SqueezeNet's own entry: its conv -> ReLU -> pool head must start with live (positive) outputs.
    recipe = MODEL_RECIPE["squeezenet1_1"]
    assert recipe["head_bias"] > 0
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    head = head_layer(model)
    assert head is model.classifier[1] and float(head.bias.abs().max()) == 0.0  # torchvision's zero bias
    changes = apply_recipe_init(model, recipe)
    assert torch.allclose(head.bias, torch.full((10,), float(recipe["head_bias"])))
    assert f"head_bias={recipe['head_bias']}" in changes
    assert model.classifier[0].p == recipe.get("dropout", 0.5)
    assert set(recipe) <= set(train_module.RECIPE_KEYS)
    # The state dict keys and shapes are untouched, so published weights still load.
    reference = torchvision.models.squeezenet1_1(weights=None, num_classes=10).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.items()}

    # MobileNet v3's ImageNet BatchNorm momentum (0.01) is raised for short runs.
    mnv3 = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10)
    assert {m.momentum for m in mnv3.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.01}
    changes = apply_recipe_init(mnv3, MODEL_RECIPE["mobilenet_v3_small"])
    assert {m.momentum for m in mnv3.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    assert "bn_momentum=0.1" in changes

    # Config resolution: the recipe when nothing is given, the user's flags over it.
    monkeypatch.setitem(MODEL_RECIPE, "lenet5", {"optimizer": "sgd", "lr": 0.02, "epochs": 7})
    config = TrainConfig(model="lenet", data="digits")  # an alias resolves to the same entry
    assert (config.resolved_optimizer(), config.resolved_lr(), config.resolved_epochs()) == ("sgd", 0.02, 7)
    config = TrainConfig(model="lenet5", data="digits", epochs=3, lr=0.5, optimizer="adamw")
    assert (config.resolved_optimizer(), config.resolved_lr(), config.resolved_epochs()) == ("adamw", 0.5, 3)
    plain = TrainConfig(model="resnet18", data="digits")
    assert plain.resolved_epochs() == MODEL_RECIPE.get("resnet18", {}).get("epochs", DEFAULT_EPOCHS)
    assert TrainConfig(model="lenet5", data="digits", optimizer="adamw").resolved_lr() == DEFAULT_LR
