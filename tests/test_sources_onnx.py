"""FILE.onnx as a source: a user's ONNX classifier through export to every CPU target, then verify and bench on
the bundle without torch; its reference is the original file in ONNX Runtime; bad graphs one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import BadInputError
from edgecnn.sources import StatedPreprocess, load_source, parse_source, source_name
from runtime_helpers import verify_and_bench_without_torch

SIZE = 32
CLASSES = 7
NORM = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
FAST = ["--warmup", "2", "--iters", "10"]


def _net(static_flatten: bool = False):
    """A small CNN with the layers edge models use: conv+BN, depthwise conv, ReLU6, pooling, a linear head."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            )
            self.head = nn.Linear(16, CLASSES)

        def forward(self, x):
            x = self.features(x)
            # x.view(x.size(0), -1) exported at a fixed batch bakes that batch into a Reshape.
            return self.head(x.view(x.size(0), -1) if static_flatten else x.flatten(1))

    torch.manual_seed(0)
    net = Net()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _export_onnx(model, path: Path, *, dynamic: bool, batch: int = 2, names=("image", "scores"),
                 dynamic_hw: bool = False) -> Path:
    import torch

    axes = {names[0]: {0: "n"}, names[1]: {0: "n"}} if dynamic else {}
    if dynamic_hw:
        axes.setdefault(names[0], {}).update({2: "h", 3: "w"})
    torch.onnx.export(model, (torch.zeros(batch, 3, SIZE, SIZE),), str(path), dynamo=False, input_names=[names[0]],
                      output_names=[names[1]], dynamic_axes=axes or None, opset_version=17)
    return path


def _handmade(path: Path, *, op: str = "Relu", two_inputs: bool = False, rank: int = 4) -> Path:
    """A graph built node by node: pooling, a matrix head, one `op` (one onnx2torch lacks, when asked)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = ["n", 3, SIZE, SIZE][:rank] if rank < 4 else ["n", 3, SIZE, SIZE]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "w"], ["mm"], name="head"),
             helper.make_node(op, ["mm"], ["y"], name="odd_op")]
    if rank < 4:
        nodes = [helper.make_node("ReduceMean", ["x"], ["flat"], name="mean", axes=[2], keepdims=0),
                 *nodes[2:]]
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["n", 3, SIZE, SIZE]))
        nodes[-1] = helper.make_node("Add", ["mm", "mm2"], ["y"], name="add")
        nodes[-1:-1] = [helper.make_node("GlobalAveragePool", ["x2"], ["p2"]),
                        helper.make_node("Flatten", ["p2"], ["f2"]), helper.make_node("MatMul", ["f2", "w"], ["mm2"])]
    weights = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, CLASSES)).astype(np.float32), "w")
    graph = helper.make_graph(nodes, "handmade", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CLASSES])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx-sources")
    (folder / "classes.txt").write_text("".join(f"class{i} a description\n" for i in range(CLASSES)))
    (folder / "not_onnx.onnx").write_bytes(b"\x00\x01 this is no protobuf \xff" * 8)
    return {
        "dynamic": _export_onnx(_net(), folder / "net.onnx", dynamic=True),
        "static": _export_onnx(_net(static_flatten=True), folder / "net_static.onnx", dynamic=False, batch=1),
        "static_pool": _export_onnx(_net(), folder / "net_static_pool.onnx", dynamic=False, batch=1),
        "dynamic_hw": _export_onnx(_net(), folder / "net_hw.onnx", dynamic=True, dynamic_hw=True),
        "two": _handmade(folder / "two_inputs.onnx", two_inputs=True),
        "rank3": _handmade(folder / "rank3.onnx", rank=3),
        "shrink": _handmade(folder / "shrink.onnx", op="Shrink"),
        "not_onnx": folder / "not_onnx.onnx",
        "classes": folder / "classes.txt",
    }


def _export(cli, source: Path, out: Path, *extra: str, target: str = "onnx"):
    return cli("export", str(source), "--target", target, "--out", str(out), "--golden-size", "64", *extra)


def _error_line(result) -> str:
    stderr = getattr(result, "stderr", "") or ""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_parse_and_load_take_the_graph_as_it_is(files):
    ref = parse_source(str(files["dynamic"]))
    assert ref.kind == "onnx" and source_name(str(files["dynamic"])) == "net"
    loaded = load_source(files["dynamic"], stated=StatedPreprocess(mean="0.5,0.5,0.5", std="0.25,0.25,0.25"))
    assert loaded.num_classes == CLASSES and loaded.preprocess.input_shape == (3, SIZE, SIZE)
    assert loaded.preprocess.resize_shorter == round(SIZE / 0.875)
    # The reference is the file in ONNX Runtime; onnx2torch's module agrees with it.
    import torch

    samples = np.random.default_rng(1).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        converted = loaded.model(torch.from_numpy(samples)).numpy()
    np.testing.assert_allclose(converted, loaded.reference_logits(samples), atol=1e-4)
    with pytest.raises(BadInputError, match="an ONNX file holds its weights"):
        load_source(files["dynamic"], weights="random", stated=StatedPreprocess(mean="0,0,0", std="1,1,1"))


@pytest.mark.parametrize("kind", ["dynamic", "static", "static_pool"])
def test_onnx_source_to_onnx_then_verify_and_bench_without_torch(kind, files, cli, tmp_path):
    out = tmp_path / f"bundle-{kind}"
    result = _export(cli, files[kind], out, *NORM, "--classes", str(files["classes"]))
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["source"] == "onnx" and manifest["model"]["checkpoint"] is None
    assert "original ONNX file" in manifest["golden"]["reference"]
    assert manifest["fusion"]["batchnorm_nodes_after"] == 0 and manifest["fusion"]["opset"] == 17
    # A baked-in Reshape keeps the batch fixed; a graph that only pools is made dynamic.
    assert manifest["input"]["batch"] == (1 if kind == "static" else "dynamic")
    (artifact,) = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert artifact["parity"]["top1_agreement"] >= 0.995
    import onnx

    graph = onnx.load(str(out / artifact["path"])).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    rows = verify_and_bench_without_torch(out, tmp_path, *FAST)
    assert rows and all(row["torch_imported"] is False for row in rows)


@pytest.mark.parametrize("target", ["x86", "arm", "arm-ncnn"])
def test_onnx_source_to_cpu_targets(target, files, cli, tmp_path):
    out = tmp_path / f"bundle-{target}"
    result = _export(cli, files["dynamic"], out, *NORM, target=target)
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    fp32 = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert fp32 and all(a["parity"]["top1_agreement"] >= 0.995 for a in fp32)
    verify_and_bench_without_torch(out, tmp_path, *FAST)


def test_dynamic_height_and_width_take_the_stated_size(files, cli, tmp_path):
    out = tmp_path / "bundle-hw"
    result = _export(cli, files["dynamic_hw"], out, *NORM, "--input-size", str(SIZE))
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [3, SIZE, SIZE]


def test_an_op_only_some_targets_take(files, cli, tmp_path):
    # ONNX Runtime runs Shrink; onnx2torch has no converter for it, so the TFLite target cannot be built.
    ok = _export(cli, files["shrink"], tmp_path / "shrink-onnx", *NORM)
    assert ok.exit_code == 0, ok.stderr + ok.stdout
    refused = _export(cli, files["shrink"], tmp_path / "shrink-arm", *NORM, target="arm")
    assert refused.exit_code == 2, refused.stderr + refused.stdout
    line = _error_line(refused)
    for part in ("target arm", "op Shrink", "'odd_op'", "ONNX Runtime, OpenVINO and TensorRT"):
        assert part in line, line
    assert not (tmp_path / "shrink-arm").exists()


def test_bad_graphs_exit_2_with_one_line(files, cli, tmp_path):
    cases = [
        ([files["two"], *NORM], "has 2 inputs (x, x2)"),
        ([files["rank3"], *NORM], "has rank 3, not 4"),
        ([files["dynamic_hw"], *NORM], "height and width are dynamic: pass --input-size S"),
        ([files["not_onnx"], *NORM], "is not an ONNX model"),
        ([files["dynamic"]], "pass --mean a,b,c --std a,b,c"),
        ([files["dynamic"], *NORM, "--input-size", "48"], "takes 32 x 32 inputs"),
        ([files["dynamic"], *NORM, "--channels", "1"], "--channels 1 but"),
        ([files["static"].with_name("missing.onnx"), *NORM], "no such ONNX file"),
    ]
    for index, (args, expected) in enumerate(cases):
        result = _export(cli, args[0], tmp_path / f"bad{index}", *args[1:])
        assert result.exit_code == 2, (args, result.stderr, result.stdout)
        assert expected in _error_line(result), (args, result.stderr)
        assert not (tmp_path / f"bad{index}").exists()


def test_a_constant_flatten_reshape_converts_for_tflite(cli, tmp_path):
    """`x.reshape(-1, K)` exports as Reshape with a constant shape: onnx2torch reads it at run time, which
    litert-torch cannot trace (EfficientNet-Lite1's ONNX head), so it is rewritten to a static Flatten."""
    import onnx
    import torch
    from torch import nn

    from edgecnn.sources.onnx_graph import _flatten_reshapes

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool, self.head = nn.Conv2d(3, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Linear(16, CLASSES)

        def forward(self, x):
            return self.head(self.pool(torch.relu(self.conv(x))).reshape(-1, 16))

    torch.manual_seed(0)
    path = _export_onnx(Net().eval(), tmp_path / "reshape.onnx", dynamic=True)
    graph = onnx.load(str(path))
    assert [n.op_type for n in graph.graph.node].count("Reshape") == 1
    assert _flatten_reshapes(onnx, graph) == 1 and "Reshape" not in [n.op_type for n in graph.graph.node]
    out = tmp_path / "bundle-reshape-arm"
    result = _export(cli, path, out, *NORM, target="arm")
    assert result.exit_code == 0, result.stderr + result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    (fp32,) = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert fp32["parity"]["top1_agreement"] >= 0.995 and fp32["parity"]["max_abs_diff"] < 1e-3


def test_only_a_proven_flatten_is_rewritten():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.sources.onnx_graph import _flatten_reshapes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    # (n, 4, 2, 2) -> (-1, 8) keeps 8 of 16 values per image: not a flatten from axis 1.
    shape = numpy_helper.from_array(np.array([-1, 8], dtype=np.int64), "shape")
    model = helper.make_model(helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y],
                                              [shape]), opset_imports=[helper.make_opsetid("", 17)])
    assert _flatten_reshapes(onnx, model) == 0 and model.graph.node[0].op_type == "Reshape"


@pytest.mark.parametrize("target", ["arm", "arm-ncnn"])
def test_reshapes_that_bake_the_batch_or_come_from_a_newer_opset_convert(target, cli, tmp_path):
    """A fixed-batch graph's `reshape(1, K)` after a transpose, and a general `reshape(-1, 8, K)` at opset 20
    (onnx2torch has Reshape converters up to opset 14 only): both reach the torch-built targets and pass parity."""
    import torch
    from torch import nn

    class Baked(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 8, 3, stride=2), nn.Linear(8 * 15 * 15, CLASSES)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).permute(0, 2, 3, 1).reshape(1, 8 * 15 * 15))

    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 8, 3, stride=2), nn.Linear(8, CLASSES)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).reshape(-1, 8, 225).mean(2))

    torch.manual_seed(0)
    baked = tmp_path / "baked.onnx"
    torch.onnx.export(Baked().eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(baked), dynamo=False)
    grouped = tmp_path / "grouped.onnx"
    torch.onnx.export(Grouped().eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(grouped), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}}, opset_version=20)
    for path in (baked, grouped):
        out = tmp_path / f"bundle-{path.stem}"
        result = _export(cli, path, out, *NORM, "--precision", "fp32", target=target)
        assert result.exit_code == 0, result.stderr + result.stdout
        (fp32,) = json.loads((out / "manifest.json").read_text())["artifacts"]
        assert fp32["parity"]["top1_agreement"] >= 0.995 and fp32["parity"]["max_abs_diff"] < 1e-3
