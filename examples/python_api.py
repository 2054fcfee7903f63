"""The README walkthrough in Python: train on digits, export int8 for onnx, x86 and arm, verify, bench, explain.

    python examples/python_api.py                          # mobilenet_v2, its recipe's 15 epochs
    python examples/python_api.py --model lenet5 --epochs 3 --json summary.json

Everything the CLI does is a function or a method here; the results are typed, and each one's
`to_dict()` is what the CLI writes with `--json` (tests/test_api.py checks they agree). The library
prints nothing: this script prints what it wants, and passes `progress=` where it wants to see stages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import edgecnn

TARGETS = ("onnx", "x86", "arm")  # ONNX Runtime QDQ, OpenVINO IR + NNCF, TFLite full-integer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("."), help="runs/ and dist/ go here")
    parser.add_argument("--min-time", type=float, default=1.0, help="bench: seconds per artifact")
    parser.add_argument("--explain-budget", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None, help="write every result's to_dict() here")
    args = parser.parse_args()

    # 1. Train (the CLI: edgecnn train mobilenet_v2 --data digits --out runs/mnv2)
    model = edgecnn.train(args.model, "digits", epochs=args.epochs, lr=args.lr, augment=not args.no_augment,
                          out=args.out / "runs" / args.model, force=True)
    print(f"trained {model.name}: test top-1 {model.metrics['test_top1']:.2f} %, input {model.input_shape}")

    summary = {"model": model.name, "checkpoint": str(model.checkpoint), "targets": {}}
    for target in TARGETS:
        # 2. Export (edgecnn export runs/mnv2 --target x86 --precision int8 --out dist/mnv2-x86)
        bundle = edgecnn.export(model, target=target, precision="int8", out=args.out / "dist" / f"{model.name}-{target}",
                                force=True, progress=lambda event: print(f"  {target}: {event}"))
        # 3. Verify (edgecnn verify dist/mnv2-x86 --data digits): passed=False on a failed check, no exception
        verified = bundle.verify(data="digits")
        for row in verified.artifacts:
            print(f"  {row.name}: top-1 {row.top1:.2f} %, agreement {row.agreement:.2%}, "
                  f"{'pass' if row.passed else 'FAIL ' + ', '.join(row.failed_checks)}")
        # 4. Bench (edgecnn bench dist/mnv2-x86 --batch 1)
        timed = bundle.bench(batch=1, warmup=5, min_time=args.min_time)
        for row in timed.rows:
            print(f"  {row.name}: p50 {row.p50_ms:.2f} ms, {row.throughput_ips:.0f} img/s, speed-up {row.speedup:.2f}x")
        # 5. Explain (edgecnn explain dist/mnv2-x86): which layers the int8 artifact loses accuracy in
        explained = bundle.explain(budget=args.explain_budget)
        for artifact in explained.artifacts:
            worst = artifact.layers[0] if artifact.layers else None
            if worst is not None:
                sqnr = "-" if worst.sqnr_db is None else f"{worst.sqnr_db:.1f}"
                print(f"  {artifact.artifact}: costliest layer {worst.user_name} ({worst.op}), SQNR {sqnr} dB")
        summary["targets"][target] = {"bundle": str(bundle.path), "verify": verified.to_dict(),
                                      "bench": timed.to_dict(), "explain": explained.to_dict()}
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
