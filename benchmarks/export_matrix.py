"""Export digits-trained zoo models to every CPU target at fp32 + int8 and verify each artifact.

Prints, per model x target x precision: file size, export time, top-1 on the full digits test
split, drop against PyTorch fp32, top-1 agreement, and verify's verdict. Checkpoints are trained
(`edgecnn train NAME --data digits`) into RUN_ROOT/NAME when missing.

    python benchmarks/export_matrix.py [--models mobilenet_v2,resnet18] [--targets onnx,x86,arm]
           [--root runs/matrix] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1", "mobilenet_v3_small", "resnet18")
TARGETS = ("onnx", "x86", "arm")


def edgecnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--root", type=Path, default=Path("runs/matrix"))
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        checkpoint = args.root / model / "model.pt"
        if not checkpoint.is_file():
            started = time.perf_counter()
            done = edgecnn("train", model, "--data", "digits", "--epochs", str(args.epochs),
                           "--out", str(checkpoint.parent), "--force")
            if done.returncode:
                print(f"{model}: training failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            print(f"{model}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        for target in args.targets.split(","):
            bundle = args.root / "bundles" / f"{model}-{target}"
            done = edgecnn("export", str(checkpoint), "--target", target, "--precision", "int8",
                           "--out", str(bundle), "--force", "--json", str(bundle) + ".export.json")
            if done.returncode:
                print(f"{model} {target}: export failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            export = json.loads(Path(str(bundle) + ".export.json").read_text())
            verify_json = Path(str(bundle) + ".verify.json")
            done = edgecnn("verify", str(bundle), "--data", "digits", "--json", str(verify_json))
            verify = json.loads(verify_json.read_text()) if verify_json.is_file() else {}
            by_path = {a.get("path") or a.get("artifact") or a.get("name"): a for a in verify.get("artifacts", [])}
            for artifact in export["artifacts"]:
                checked = next((v for k, v in by_path.items() if k and str(k).endswith(artifact["artifact"])), {})
                rows.append({"model": model, "target": target, "precision": artifact["precision"],
                             "size_mb": artifact["bytes"] / 1e6, "export_s": artifact["export_s"],
                             "top1": checked.get("top1"), "reference_top1": checked.get("reference_top1"),
                             "drop": checked.get("drop"), "agreement": checked.get("agreement"),
                             "passed": checked.get("passed")})
            print(f"{model} {target}: exported and verified (verify exit {done.returncode})", flush=True)
    print()
    print("| model | target | precision | size MB | export s | top-1 % | PyTorch top-1 % | drop pts | agreement | verify |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(f"| {r['model']} | {r['target']} | {r['precision']} | {r['size_mb']:.2f} | {r['export_s']:.1f} | "
              f"{fmt(r['top1'], '.2f')} | {fmt(r['reference_top1'], '.2f')} | {fmt(r['drop'], '+.2f')} | "
              f"{fmt(r['agreement'], '.4f')} | {'pass' if r['passed'] else 'FAIL' if r['passed'] is False else '-'} |")


if __name__ == "__main__":
    main()
