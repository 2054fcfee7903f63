"""Quantization-aware fine-tuning by distillation (QFT) before INT8 export: does it close the Lite1/Lite2 gap?

Prototype measurement for issue 22. The fp32 torch model's BatchNorms are folded into their convolutions; every
folded weight is fake-quantized on the grid the runtime will derive (symmetric per-channel, codes +-127: scale =
max|w| / 127), every tensor that feeds a convolution, a linear layer or an addition is fake-quantized with a fixed
minmax range from the calibration photos (uint8 asymmetric as ONNX Runtime's default, or int8 symmetric as
TensorRT's Q/DQ). The student is then trained to match the fp32 teacher's softmax (KL) on random crops and flips
of the *calibration* photos only. Its weights are finally snapped onto that grid and exported as fp32 ONNX, so a
runtime's own per-channel quantizer finds exactly those codes; the runtime calibrates activations itself.

Scored like `int8_methods.py` (same seeded split, 100 calib / 100 search / 100 report), in exact Q/DQ
emulation (ORT_DISABLE_ALL), against the *original* fp32 model.

    PYTHONPATH=. python benchmarks/int8_qft.py --models lite1 --steps 200 --out /tmp/qft
"""

from __future__ import annotations

import argparse
import json
import operator
import time
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from int8_methods import MEAN, STD, MODELS, cpu_line, export_fp32, load_parts, photo_paths, run_logits, score, \
    split_indices, torch_model


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m, name):
        return isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) or super().is_leaf_module(m, name)


def weight_fq(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel fake quantization, codes -127..127, scale from the weight's own max."""
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / 127
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


class FoldedConv(nn.Module):
    """conv + BN folded into one conv whose weight is fake-quantized while `quantize` is set."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d | None):
        super().__init__()
        self.conv = conv
        w, b = conv.weight.detach().clone(), (conv.bias.detach().clone() if conv.bias is not None else None)
        if bn is not None:
            k = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            w = w * k.reshape(-1, *([1] * (w.dim() - 1)))
            b = ((b if b is not None else torch.zeros_like(bn.running_mean)) - bn.running_mean) * k + bn.bias.detach()
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(b) if b is not None else None
        self.quantize = True

    def forward(self, x):
        if not self.quantize:  # exported: the conv itself, carrying the (snapped) folded weights
            return self.conv(x)
        return torch.func.functional_call(self.conv, {"weight": weight_fq(self.weight), "bias": self.bias}, (x,))

    def settle(self) -> None:
        """Snap the weights onto their grid and hand them to the conv for export."""
        with torch.no_grad():
            self.conv.weight = nn.Parameter(weight_fq(self.weight))
            self.conv.bias = nn.Parameter(self.bias.detach().clone()) if self.bias is not None else None
        self.quantize = False


class ActFQ(nn.Module):
    """A tensor's fake quantization with a range fixed from calibration (min/max over the calibration photos)."""

    def __init__(self, symmetric: bool):
        super().__init__()
        self.symmetric, self.observing, self.quantize = symmetric, True, True
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))

    def forward(self, x):
        if self.observing:
            self.lo.copy_(torch.minimum(self.lo, x.detach().min()))
            self.hi.copy_(torch.maximum(self.hi, x.detach().max()))
            return x
        if not self.quantize:
            return x
        if self.symmetric:
            scale = float(torch.maximum(-self.lo, self.hi)) / 127
            return torch.fake_quantize_per_tensor_affine(x, max(scale, 1e-12), 0, -127, 127)
        scale = max(float(self.hi - self.lo) / 255, 1e-12)
        zero = int(round(-float(self.lo) / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def quantizable(model: nn.Module, symmetric: bool) -> fx.GraphModule:
    """The model with BN folded into convs and fake quantization on weights and on the inputs of conv/linear/add."""
    graph = _Tracer().trace(model)
    gm = fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d):
            users = list(node.users)
            bn = None
            if len(users) == 1 and users[0].op == "call_module" and isinstance(modules[users[0].target], nn.BatchNorm2d):
                bn = modules[users[0].target]
                users[0].replace_all_uses_with(node)
                gm.graph.erase_node(users[0])
            gm.add_submodule(node.target, FoldedConv(modules[node.target], bn))
        elif node.op == "call_module" and isinstance(modules[node.target], nn.Linear):
            gm.add_submodule(node.target, FoldedConv(modules[node.target], None))
    modules = dict(gm.named_modules())
    fed = []
    for node in gm.graph.nodes:
        consumer = (node.op == "call_module" and isinstance(modules.get(node.target), FoldedConv)) or \
                   (node.op == "call_function" and node.target in (operator.add, torch.add))
        if consumer:
            fed += [a for a in node.args if isinstance(a, fx.Node) and a not in fed]
    for i, src in enumerate(fed):
        name = f"act_fq_{i}"
        gm.add_submodule(name, ActFQ(symmetric))
        with gm.graph.inserting_after(src):
            q = gm.graph.call_module(name, (src,))
        src.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)
    gm.graph.lint()
    gm.recompile()
    return gm


def set_mode(gm: nn.Module, *, observing: bool | None = None, quantize: bool | None = None) -> None:
    for m in gm.modules():
        if isinstance(m, ActFQ) and observing is not None:
            m.observing = observing
        if isinstance(m, (ActFQ, FoldedConv)) and quantize is not None:
            m.quantize = quantize


def resized_calibration(size: int) -> list[np.ndarray]:
    """The calibration photos, shorter side at size/0.875, normalized, uncropped (random crops come later)."""
    from PIL import Image

    paths, _ = photo_paths()
    idx = split_indices(len(paths))["calib"]
    shorter = int(round(size / 0.875))
    out = []
    for i in idx:
        with Image.open(paths[i]) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = shorter / min(w, h)
            image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            out.append(((np.asarray(image, np.float32).transpose(2, 0, 1) / 255 - MEAN) / STD).astype(np.float32))
    return out


def batches(photos: list[np.ndarray], size: int, batch: int, rng: np.random.Generator):
    while True:
        picks = rng.choice(len(photos), batch, replace=False)
        crops = []
        for p in picks:
            img = photos[p]
            y = rng.integers(0, img.shape[1] - size + 1)
            x = rng.integers(0, img.shape[2] - size + 1)
            crop = img[:, y:y + size, x:x + size]
            crops.append(crop[:, :, ::-1] if rng.random() < 0.5 else crop)
        yield torch.from_numpy(np.ascontiguousarray(np.stack(crops)))


def finetune(name: str, size: int, calib: np.ndarray, *, symmetric: bool, steps: int, batch: int, lr: float,
             log) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    teacher = torch_model(name)
    student = quantizable(torch_model(name), symmetric)
    student.eval()
    set_mode(student, observing=True)
    with torch.no_grad():
        for i in range(0, len(calib), 10):
            student(torch.from_numpy(calib[i:i + 10]))
    set_mode(student, observing=False, quantize=True)
    params = [p for m in student.modules() if isinstance(m, FoldedConv) for p in (m.weight, m.bias) if p is not None]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(0)
    stream = batches(resized_calibration(size), size, batch, rng)
    started, losses = time.perf_counter(), []
    for step in range(steps):
        x = next(stream)
        with torch.no_grad():
            target = F.softmax(teacher(x), 1)
        loss = F.kl_div(F.log_softmax(student(x), 1), target, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step % 20 == 0 or step == steps - 1:
            log(f"{name} step {step} loss {np.mean(losses[-20:]):.4f} ({time.perf_counter() - started:.0f} s)")
    # Snap: the weights become their own fake-quantized values, so a runtime's max|w|/127 grid holds them exactly.
    for m in student.modules():
        if isinstance(m, FoldedConv):
            m.settle()
    set_mode(student, quantize=False)
    return student, {"steps": steps, "batch": batch, "lr": lr, "train_s": round(time.perf_counter() - started, 1),
                     "loss_first20": float(np.mean(losses[:20])), "loss_last20": float(np.mean(losses[-20:]))}


def main() -> None:
    from edgecnn.backends.onnxruntime.int8 import float_logits
    from edgecnn.backends.onnxruntime.quantize import quantize_onnx_int8
    from edgecnn.export.onnx import export_onnx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--schemes", default="ort,trt", help="ort: uint8 asymmetric activations; trt: int8 symmetric")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--out", default="/tmp/qft")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"cpu": cpu_line(), "args": vars(args), "rows": []}
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    for name in args.models.split(","):
        size = MODELS[name]
        data, labels, parts = load_parts(name, size, out)
        fp32 = export_fp32(name, size, out, data["calib"])
        ref = {p: run_logits(fp32, data[p]) for p in ("search", "report")}
        for scheme in args.schemes.split(","):
            symmetric = scheme == "trt"
            tag = f"{name}-{scheme}-s{args.steps}-lr{args.lr:g}"
            model, info = finetune(name, size, data["calib"], symmetric=symmetric, steps=args.steps,
                                   batch=args.batch, lr=args.lr, log=log)
            tuned = out / f"{tag}-fp32.onnx"
            export_onnx(model, (3, size, size), tuned, opset=17, sample=data["calib"][:2])
            row = {"model": name, "scheme": scheme, **info}
            for variant, source in (("baseline", fp32), ("qft", tuned)):
                qdq = out / f"{name}-{scheme}-{variant}{'' if variant == 'baseline' else tag}.onnx"
                if not qdq.exists():
                    quantize_onnx_int8(source, qdq, data["calib"], symmetric=symmetric, reduce_range=False)
                    float_logits(qdq)
                for part in ("search", "report"):
                    got = run_logits(qdq, data[part], emulate=True)
                    row[f"{variant}_{part}"] = score(ref[part], got, labels[parts[part]])
                if variant == "qft":
                    row["qft_fp32_report"] = score(ref["report"], run_logits(tuned, data["report"]), labels[parts["report"]])
            log(json.dumps(row))
            results["rows"].append(row)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------- finer-grained scoring
def ten_crops(part: str, size: int) -> np.ndarray:
    """Ten views of each photo of a part (4 corners + centre, and their mirrors) at the model's preprocessing
    scale: label-free agreement with fp32 on 10x the inputs, so 1 view is 0.1 point instead of 1."""
    from PIL import Image

    paths, _ = photo_paths()
    idx = split_indices(len(paths))[part]
    shorter = int(round(size / 0.875))
    views = []
    for i in idx:
        with Image.open(paths[i]) as image:
            image = image.convert("RGB")
            w, h = image.size
            scale = shorter / min(w, h)
            image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            arr = ((np.asarray(image, np.float32).transpose(2, 0, 1) / 255 - MEAN) / STD).astype(np.float32)
        H, W = arr.shape[1:]
        for y, x in ((0, 0), (0, W - size), (H - size, 0), (H - size, W - size), ((H - size) // 2, (W - size) // 2)):
            crop = arr[:, y:y + size, x:x + size]
            views += [crop, crop[:, :, ::-1]]
    return np.ascontiguousarray(np.stack(views))


def fine_score(ref: np.ndarray, got: np.ndarray) -> dict:
    """Agreement and the mean KL(fp32 || int8) of the softmax, and the mean squared logit error."""
    p = ref - ref.max(1, keepdims=True)
    p = np.exp(p) / np.exp(p).sum(1, keepdims=True)
    lq = got - got.max(1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(1, keepdims=True))
    lp = np.log(np.clip(p, 1e-30, None))
    return {"views": len(ref), "agreement": round(float(np.mean(ref.argmax(1) == got.argmax(1))), 4),
            "kl": float(np.mean((p * (lp - lq)).sum(1))), "logit_mse": float(np.mean((ref - got) ** 2))}
