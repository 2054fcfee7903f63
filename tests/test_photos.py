"""Real photos: imagefolder: of JPEGs of any size (resize the shorter side, centre crop), ImageNet class
order through a class list, --golden-data apart from --calib-data, and verify --data on photos."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import BadInputError
from edgecnn.preprocess import PreprocessSpec

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
SAMPLE = SHARED / "imagenet-sample"
SYNSETS = SHARED / "imagenet-synsets.txt"
pytestmark = pytest.mark.skipif(not SAMPLE.is_dir() or not SYNSETS.is_file(),
                                reason=f"the real photos are not there ({SAMPLE}, {SYNSETS}): see shared/DATA.md")

SIZE, RESIZE = 64, 73  # a small model's crop, and round(64 / 0.875)
STATED = ["--input-size", str(SIZE), "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
NET_PY = textwrap.dedent('''
    import torch
    from torch import nn


    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, 1000))
''')


def _synsets() -> list[str]:
    return [line.split()[0] for line in SYNSETS.read_text().splitlines() if line.strip()]


def _subset(tmp_path: Path, name: str, synsets: list[str]) -> Path:
    """A folder of some of the sample's class folders (copies: one photo each)."""
    folder = tmp_path / name
    for synset in synsets:
        shutil.copytree(SAMPLE / synset, folder / synset)
    return folder


def _pil_reference(path: Path, size: int, shorter: int, mode: str) -> np.ndarray:
    """Resize the shorter side to `shorter` (PIL bilinear), then crop the centre size x size: torchvision's eval."""
    from PIL import Image

    image = Image.open(path).convert(mode)
    w, h = image.size
    scale = shorter / min(w, h)
    new = (shorter, int(h * scale)) if w <= h else (int(w * scale), shorter)
    image = image.resize(new, Image.BILINEAR)
    left, top = int(round((new[0] - size) / 2)), int(round((new[1] - size) / 2))
    return np.asarray(image.crop((left, top, left + size, top + size)))


@pytest.fixture(scope="module")
def present() -> list[str]:
    return sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())


def test_photos_of_any_size_become_center_crops_like_pil(present, monkeypatch):
    from edgecnn.data import ImageFiles, load_data, preprocessed_sample, whole_pool
    import edgecnn.data.photos as photos

    dataset = load_data(f"imagefolder:{SAMPLE}")
    pool = whole_pool(dataset)
    assert isinstance(pool.images, ImageFiles) and len(pool) == len(present) == 300
    paths = pool.images.paths
    sizes = {}
    from PIL import Image

    for index, path in enumerate(paths):
        with Image.open(path) as image:
            sizes.setdefault((image.width > image.height, image.size), index)
    picks = sorted(sizes.values())[:6]
    assert {landscape for landscape, _ in sizes} == {True, False}  # portrait and landscape photos
    rgb = PreprocessSpec(size=SIZE, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3, resize_shorter=RESIZE)
    crops = pool.images[np.asarray(picks)].decode_for(rgb)
    assert crops.shape == (len(picks), SIZE, SIZE, 3) and crops.dtype == np.uint8
    for crop, index in zip(crops, picks):
        np.testing.assert_array_equal(crop, _pil_reference(paths[index], SIZE, RESIZE, "RGB"))
    luma = PreprocessSpec(size=SIZE, channels=1, mean=(0.5,), std=(0.25,), resize_shorter=RESIZE)
    np.testing.assert_array_equal(pool.images[picks[:2]].decode_for(luma)[1],
                                  _pil_reference(paths[picks[1]], SIZE, RESIZE, "L"))
    # The model input is the crop, normalised: nothing else is resized.
    inputs = rgb.apply(pool.images[np.asarray(picks)])
    expected = (crops.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(inputs, expected, atol=1e-5)
    # torchvision's own eval transforms give the same pixels.
    transforms = pytest.importorskip("torchvision.transforms")
    tv = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(SIZE)])
    np.testing.assert_array_equal(crops[0], np.asarray(tv(Image.open(paths[picks[0]]).convert("RGB"))))
    # Streaming: a sample of 10 decodes those 10 photos and no other.
    opened = []
    real_open = photos._open
    monkeypatch.setattr(photos, "_open", lambda path: opened.append(path) or real_open(path))
    sample, _ = preprocessed_sample(pool, rgb, limit=10)
    assert sample.shape == (10, 3, SIZE, SIZE) and len(opened) == 10


def test_folders_map_to_the_class_list_line_numbers(present, tmp_path):
    from edgecnn.data import load_data, whole_pool

    synsets = _synsets()
    assert len(synsets) == 1000
    dataset = load_data(f"imagefolder:{SAMPLE}", class_names=synsets)
    assert dataset.class_names == tuple(synsets) and dataset.num_classes == 1000
    pool = whole_pool(dataset)
    labels = pool.labels.tolist()
    assert [synsets[label] for label in labels] == [path.parent.name for path in pool.images.paths]
    assert sorted(labels) == sorted(synsets.index(name) for name in present)
    assert labels != sorted(range(len(present)))  # line numbers, not the folders' own order
    # A folder not in the list is named.
    folder = _subset(tmp_path, "odd", present[:3])
    shutil.copytree(SAMPLE / present[3], folder / "n99999999")
    with pytest.raises(BadInputError, match="n99999999 is not in the model's class list"):
        load_data(f"imagefolder:{folder}", class_names=synsets)


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photo-net")
    (folder / "net.py").write_text(NET_PY)
    return folder / "net.py"


def _loaded(net: Path):
    from edgecnn.sources import StatedPreprocess, load_source

    return load_source(f"{net}:build", stated=StatedPreprocess(
        input_size=SIZE, mean="0.485,0.456,0.406", std="0.229,0.224,0.225", classes=str(SYNSETS)))


def test_golden_set_apart_from_calibration(net, present, tmp_path):
    from edgecnn.build_context import ExportRequest
    from edgecnn.samples import model_data

    loaded = _loaded(net)
    calib, golden = _subset(tmp_path, "calib", present[:20]), _subset(tmp_path, "golden", present[20:32])
    request = ExportRequest(source="x", target="onnx", out=tmp_path / "out", calib_data=f"imagefolder:{calib}",
                            golden_data=f"imagefolder:{golden}", calib_size=16)
    data = model_data(loaded, loaded.preprocess, request, needs_calibration=True)
    assert len(data.calibration) == 16 and len(data.golden_inputs) == 12
    assert data.labels_meaningful and sorted(data.golden_labels.tolist()) == \
        sorted(_synsets().index(s) for s in present[20:32])
    assert str(golden) in data.golden_source and str(calib) in data.calibration_source
    # Only --calib-data: the golden set is a part of it that calibration does not use.
    request = ExportRequest(source="x", target="onnx", out=tmp_path / "out", calib_data=f"imagefolder:{calib}",
                            calib_size=8)
    data = model_data(loaded, loaded.preprocess, request, needs_calibration=True)
    assert len(data.calibration) == 8 and len(data.golden_inputs) == 12  # 20 photos: 8 + 12
    calibration_rows = {row.tobytes() for row in data.calibration}
    assert not any(row.tobytes() in calibration_rows for row in data.golden_inputs)
    assert "none used for calibration" in data.golden_source
    # fp32 needs no calibration: every photo goes to the golden set.
    data = model_data(loaded, loaded.preprocess, request, needs_calibration=False)
    assert data.calibration is None and len(data.golden_inputs) == 20


def test_export_with_golden_data_then_verify_on_photos(net, present, tmp_path, cli):
    import torch

    calib, photos = _subset(tmp_path, "calib", present[:16]), _subset(tmp_path, "photos", present[100:124])
    out = tmp_path / "bundle"
    result = cli("export", f"{net}:build", *STATED, "--classes", str(SYNSETS), "--target", "onnx",
                 "--out", str(out), "--calib-data", f"imagefolder:{calib}", "--golden-data", f"imagefolder:{photos}")
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["golden"]["samples"] == 24 and str(photos) in manifest["golden"]["source"]
    assert manifest["preprocess"]["class_names"] == _synsets()

    report_path = tmp_path / "verify.json"
    result = cli("verify", str(out), "--data", f"imagefolder:{photos}", "--threads", "1", "--json", str(report_path))
    assert result.exit_code == 0, result.stderr + result.stdout
    report = json.loads(report_path.read_text())
    assert report["samples"] == 24 and report["samples_source"] == f"data:imagefolder:{photos}"
    (row,) = report["artifacts"]
    assert row["agreement"] >= 0.995 and row["top1"] is not None
    # The reported top-1 is the model's on those photos with the synsets' line numbers as labels.
    loaded = _loaded(net)
    from edgecnn.data import load_data, preprocessed_sample, whole_pool

    pool = whole_pool(load_data(f"imagefolder:{photos}", class_names=_synsets()))
    inputs, labels = preprocessed_sample(pool, loaded.preprocess)
    with torch.no_grad():
        predicted = loaded.model(torch.from_numpy(inputs)).argmax(1).numpy()
    assert row["top1"] == pytest.approx(100.0 * float(np.mean(predicted == labels)), abs=1e-3)

    # A folder that is not an ImageNet class: one line naming it, exit 2.
    odd = _subset(tmp_path, "odd", present[:2])
    shutil.copytree(SAMPLE / present[2], odd / "not_a_synset")
    for args in (("verify", str(out), "--data", f"imagefolder:{odd}"),
                 ("export", f"{net}:build", *STATED, "--classes", str(SYNSETS), "--target", "onnx",
                  "--out", str(tmp_path / "never"), "--calib-data", f"imagefolder:{odd}")):
        result = cli(*args)
        assert result.exit_code == 2, result.stdout
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "not_a_synset is not in the model's class list" in errors[0], result.stderr
        assert "Traceback" not in result.stderr


def test_a_bicubic_timm_model_gets_timms_own_eval_pixels():
    """timm's resnet18 resizes bicubic: edgecnn's preprocessing of a photo equals timm's eval transform."""
    timm = pytest.importorskip("timm")
    from PIL import Image

    from edgecnn.data import load_data, whole_pool
    from edgecnn.sources import load_source

    loaded = load_source("timm:resnet18", weights="random")
    spec = loaded.preprocess
    assert spec.resize == "bicubic" and spec.to_dict()["resize"] == "bicubic"
    model = timm.create_model("resnet18", pretrained=False)
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=False)
    pool = whole_pool(load_data(f"imagefolder:{SAMPLE}"))
    picks = np.asarray([0, 7])
    ours = spec.apply(pool.images[picks])
    for row, index in enumerate(picks):
        theirs = transform(Image.open(pool.images.paths[index]).convert("RGB")).numpy()
        np.testing.assert_allclose(ours[row], theirs, atol=1e-5)


def test_bicubic_pixel_arrays_resize_like_torch():
    torch = pytest.importorskip("torch")
    from edgecnn.preprocess import bicubic_matrix

    rng = np.random.default_rng(0)
    for source, target in ((8, 32), (300, 224), (5, 9)):
        image = rng.random((source, source), dtype=np.float32)
        expected = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=(target, target),
                                                   mode="bicubic", align_corners=False)[0, 0].numpy()
        matrix = bicubic_matrix(source, target)
        np.testing.assert_allclose(matrix @ image @ matrix.T, expected, atol=5e-5)
    spec = PreprocessSpec(size=16, channels=1, mean=(0.0,), std=(1.0,), resize="bicubic")
    pixels = (rng.random((2, 8, 8)) * 255).astype(np.uint8)
    expected = torch.nn.functional.interpolate(torch.from_numpy(pixels.astype(np.float32) / 255)[:, None],
                                               size=(16, 16), mode="bicubic", align_corners=False).numpy()
    np.testing.assert_allclose(spec.apply(pixels), expected, atol=5e-5)


def test_verify_replays_a_foreign_source_on_photos_outside_the_golden_set(net, present, tmp_path, cli):
    """No checkpoint: verify re-runs the factory (PyTorch) or the ONNX file (ONNX Runtime, torch blocked) live;
    a source file changed since export is no reference."""
    import torch

    from runtime_helpers import blocking_env, run_cli

    work = tmp_path / "src"
    work.mkdir()
    factory = work / "net.py"
    factory.write_text(NET_PY)
    golden, others = _subset(tmp_path, "golden", present[:12]), _subset(tmp_path, "others", present[200:216])
    onnx_file = work / "net.onnx"
    torch.onnx.export(_loaded(factory).model, (torch.zeros(1, 3, SIZE, SIZE),), str(onnx_file), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    for source, needs_torch, name in ((f"{factory}:build", True, "py"), (str(onnx_file), False, "onnx")):
        out = tmp_path / f"bundle-{name}"
        result = cli("export", source, *STATED, "--classes", str(SYNSETS), "--target", "onnx", "--precision", "fp32",
                     "--out", str(out), "--golden-data", f"imagefolder:{golden}")
        assert result.exit_code == 0, result.stderr + result.stdout
        replay = json.loads((out / "manifest.json").read_text())["model"]["replay"]
        assert Path(replay["source"].rpartition(":build")[0] or replay["source"]).is_absolute()
        report_path = tmp_path / f"{out.name}.json"
        env = None if needs_torch else blocking_env(tmp_path, "torch")
        done = run_cli("verify", str(out), "--data", f"imagefolder:{others}", "--json", str(report_path), env=env)
        assert done.returncode == 0, done.stderr
        report = json.loads(report_path.read_text())
        assert report["reference_source"] == "pytorch-live" and report["samples"] == 16
        runtime = "PyTorch" if needs_torch else "ONNX Runtime"
        assert str(work) in report["reference_label"] and runtime in report["reference_label"]
        assert report["artifacts"][0]["agreement"] >= 0.995
    # The factory's file edited after export: its sha256 differs, so it is no reference for other photos.
    factory.write_text(NET_PY.replace("manual_seed(0)", "manual_seed(1)"))
    done = run_cli("verify", str(tmp_path / "bundle-py"), "--data", f"imagefolder:{others}")
    assert done.returncode == 2 and "changed since export" in done.stderr, done.stderr
    # On the golden set verify falls back to the golden logits and says so, unless told the live model is
    # the reference: then it refuses instead of silently comparing with something else.
    done = run_cli("verify", str(tmp_path / "bundle-py"), "--reference-source", "pytorch")
    assert done.returncode == 2 and "--reference-source pytorch" in done.stderr, done.stderr
    assert "changed since export" in done.stderr
    assert run_cli("verify", str(tmp_path / "bundle-py")).returncode == 0
