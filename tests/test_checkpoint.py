"""Checkpoints and model loading on files the tests write: edgecnn checkpoints, torchvision-style
state dicts, the published-weights cache, and every way such a file can be wrong."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch

from edgecnn.checkpoint import load_model, read_checkpoint, save_checkpoint
from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec

torch.set_num_threads(1)

CLASSES = tuple("abcd")


def _error_line(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


@pytest.fixture
def lenet_checkpoint(tmp_path):
    from edgecnn.zoo import build_model

    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=len(CLASSES))
    preprocess = PreprocessSpec(size=32, channels=1, mean=(0.3,), std=(0.4,), class_names=CLASSES, data="digits",
                                normalization="dataset")
    path = save_checkpoint(tmp_path / "run" / "model.pt", arch="lenet5", state_dict=model.state_dict(),
                           preprocess=preprocess, metrics={"test_top1": np.float64(91.5)}, seed=3)
    return path, model.eval()


def test_checkpoint_is_plain_data_with_everything_export_needs(lenet_checkpoint):
    path, model = lenet_checkpoint
    raw = torch.load(path, map_location="cpu", weights_only=True)  # data, never code
    for key in ("arch", "num_classes", "class_names", "preprocess", "state_dict", "metrics", "edgecnn_version",
                "torch_version"):
        assert key in raw, key
    assert raw["arch"] == "lenet5" and raw["num_classes"] == 4 and raw["class_names"] == list(CLASSES)
    assert raw["metrics"]["test_top1"] == 91.5 and raw["torch_version"] == str(torch.__version__)
    assert not list(path.parent.glob(".model.pt.*"))  # the atomic write left no temp file

    for source in (path, path.parent, str(path)):
        loaded = load_model(source)
        assert loaded.from_checkpoint and loaded.name == "lenet5" and loaded.class_names == CLASSES
        assert loaded.preprocess.mean == (0.3,) and loaded.preprocess.size == 32 and loaded.preprocess.data == "digits"
        assert loaded.checkpoint["seed"] == 3 and not loaded.model.training
        x = torch.randn(2, 1, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), model(x))


def test_corrupt_and_pickled_checkpoints_are_bad_input(tmp_path, lenet_checkpoint):
    path, model = lenet_checkpoint
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file at all")
    with pytest.raises(BadInputError, match="corrupt"):
        load_model(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(BadInputError, match="corrupt"):
        load_model(truncated)
    pickled = tmp_path / "pickled.pt"
    torch.save(model, pickled)  # a whole module: code, which weights_only refuses
    with pytest.raises(BadInputError, match="weights_only"):
        load_model(pickled)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(BadInputError, match="--state-dict"):
        load_model(bare)
    with pytest.raises(BadInputError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(BadInputError, match="without model.pt"):
        load_model(tmp_path)


def test_class_count_and_architecture_mismatches_are_bad_input(tmp_path, lenet_checkpoint):
    path, model = lenet_checkpoint
    with pytest.raises(BadInputError, match="4 classes, not the 10"):
        load_model(path, num_classes=10)
    # A checkpoint that claims another architecture than its weights.
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "squeezenet1_1"
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    with pytest.raises(BadInputError, match="wrong architecture"):
        load_model(wrong)
    payload["arch"] = "no_such_net"
    torch.save(payload, wrong)
    with pytest.raises(BadInputError, match="does not know"):
        load_model(wrong)
    payload["arch"], payload["num_classes"] = "lenet5", 7  # the header disagrees with the names
    torch.save(payload, wrong)
    with pytest.raises(BadInputError, match="class names"):
        read_checkpoint(wrong)


def test_cli_reports_bad_checkpoints_in_one_line(tmp_path, lenet_checkpoint, cli):
    path, _ = lenet_checkpoint
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 nope")
    result = cli("eval", str(garbage), "--data", "digits")
    assert result.exit_code == 2 and "corrupt" in _error_line(result)
    # 4 classes against the 10 of digits.
    result = cli("eval", str(path), "--data", "digits")
    assert result.exit_code == 2 and "class-count mismatch" in _error_line(result)
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet18"
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    result = cli("eval", str(wrong), "--data", "digits")
    assert result.exit_code == 2 and "wrong architecture" in _error_line(result)


# ------------------------------------------------------------------------- torchvision state dicts


def test_state_dict_file_with_a_name_loads_torchvision_weights(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.squeezenet1_1(weights=None, num_classes=6).eval()
    plain = tmp_path / "squeeze.pth"
    torch.save(reference.state_dict(), plain)
    # The same weights as DDP saves them ("module." prefix) inside a training container.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, wrapped)

    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        expected = reference(x)
    for file in (plain, wrapped):
        loaded = load_model("squeezenet", state_dict=file)  # an alias works too
        assert loaded.name == "squeezenet1_1" and loaded.num_classes == 6
        assert loaded.provenance["source"] == "state_dict" and loaded.accuracy_meaningful
        assert loaded.preprocess.channels == 3 and loaded.preprocess.mean == (0.485, 0.456, 0.406)
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), expected)

    with pytest.raises(BadInputError, match="6 classes, not the 10"):
        load_model("squeezenet1_1", state_dict=plain, num_classes=10)
    resnet = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=6).state_dict(), resnet)
    with pytest.raises(BadInputError, match="wrong architecture"):
        load_model("squeezenet1_1", state_dict=resnet)
    with pytest.raises(BadInputError, match="not with a checkpoint"):
        load_model(_checkpoint_for(tmp_path), state_dict=plain)


def _checkpoint_for(tmp_path):
    from edgecnn.zoo import build_model

    preprocess = PreprocessSpec(size=32, channels=1, mean=(0.5,), std=(0.5,), class_names=("x", "y"))
    return save_checkpoint(tmp_path / "ck.pt", arch="lenet5", state_dict=build_model("lenet5", 2).state_dict(),
                           preprocess=preprocess)


# --------------------------------------------------------------------------------- published weights


def _offline_error(name: str) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(BadInputError) as caught:
        load_model(name, weights="imagenet")
    return str(caught.value), time.perf_counter() - started


def test_imagenet_weights_offline_name_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    message, seconds = _offline_error("squeezenet1_1")
    assert f"in {cache}/" in message and "squeezenet1_1-" in message and ".pth" in message
    assert seconds < 20

    # No network at all (every name lookup fails, as on the CI machine): fails as fast, same advice.
    monkeypatch.delenv("EDGECNN_OFFLINE")

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    message, seconds = _offline_error("squeezenet1_1")
    assert f"in {cache}/" in message and "--weights random" in message
    assert seconds < 20
    assert not any(cache.glob("*.pth")), "a failed download must leave no partial file"

    with pytest.raises(BadInputError, match="no published weights"):
        load_model("lenet5", weights="imagenet")


def test_imagenet_weights_placed_in_the_cache_load_without_network(tmp_path, monkeypatch):
    import torchvision

    from edgecnn.checkpoint import published_weights_file
    from edgecnn.zoo import get_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EDGECNN_OFFLINE", "1")
    path, url = published_weights_file(get_spec("squeezenet1_1"))
    assert path.parent == tmp_path / "torch" / "hub" / "checkpoints" and url.endswith(path.name)
    # Stand-in weights in the published file's place and format (a 1,000-class state dict).
    torch.manual_seed(2)
    stand_in = torchvision.models.squeezenet1_1(weights=None).eval()
    path.parent.mkdir(parents=True)
    torch.save(stand_in.state_dict(), path)
    loaded = load_model("squeezenet1_1", weights="imagenet")
    assert loaded.num_classes == 1000 and loaded.class_names[0] == "tench"
    assert loaded.provenance["weights"] == "imagenet" and loaded.preprocess.normalization == "model"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), stand_in(x))
