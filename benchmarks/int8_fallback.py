"""INT8 that holds on real models: EfficientNet-Lite1/Lite2 exported at int8 with defaults to every CPU target
(and jetson's Q/DQ ONNX), calibrated, searched and reported on disjoint thirds of the ImageNet sample.

Split: the sample's 300 class folders (one photo each) in sorted order; positions 0, 3, 6, ... calibrate
(100 photos); the other 200 form the golden set, which export splits again: even positions of the golden
sample are what the INT8 search chooses on (100), odd positions the part it reports the gate on (100), never
seen by the search. Nothing is shared. Per target it prints the recipe export chose, the layers kept in
float, top-1, drop and agreement with PyTorch fp32 on the report part, the arithmetic the candidates were
scored with, the agreement on the whole golden set (the export's parity check: what verify computes), p50 latency
at batch 1 of the int8 artifact with fallback, of full int8 (the search's own timing: 5 warm-up runs,
>= 1 s of perf_counter_ns-timed runs, median) and of fp32 (edgecnn bench: each artifact in its own
process, 10 warm-up runs, >= 3 s timed), and how long the INT8 search took.

    python benchmarks/int8_fallback.py --photos ../shared/imagenet-sample --synsets ../shared/imagenet-synsets.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"lite1": 240, "lite2": 260}
TARGETS = ("onnx", "onnx-vnni", "x86", "x86-vnni", "arm", "jetson")


def split(photos: Path, work: Path) -> tuple[Path, Path]:
    """Every third class folder calibrates, the others are the golden set (symlinks)."""
    calib, golden = work / "calib", work / "golden"
    for index, folder in enumerate(sorted(p for p in photos.iterdir() if p.is_dir())):
        side = calib if index % 3 == 0 else golden
        side.mkdir(parents=True, exist_ok=True)
        (side / folder.name).symlink_to(folder.resolve())
    return calib, golden


def edgecnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True)


def export(model: str, target: str, out: Path, calib: Path, golden: Path, synsets: str) -> dict:
    size = MODELS[model]
    done = edgecnn("export", f"{ROOT / 'examples' / 'efficientnet_lite.py'}:{model}", "--input-size", str(size),
                   "--mean", "0.498,0.498,0.498", "--std", "0.502,0.502,0.502", "--classes", synsets,
                   "--calib-data", f"imagefolder:{calib}", "--golden-data", f"imagefolder:{golden}",
                   "--calib-size", "100", "--golden-size", "200", "--target", target, "--precision", "int8",
                   "--out", str(out), "--force", "--json", str(out) + ".json")
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(Path(str(out) + ".json").read_text())


def bench_p50(bundle: Path) -> dict[str, float]:
    out = bundle.with_name(bundle.name + ".bench.json")
    done = edgecnn("bench", str(bundle), "--batch", "1", "--json", str(out))
    if done.returncode != 0:
        return {}
    return {row["precision"]: row["latency_ms"]["p50"] for row in json.loads(out.read_text())["artifacts"]
            if row.get("precision") in ("fp32", "int8")}


def row_for(model: str, target: str, report: dict, p50: dict) -> dict:
    manifest = json.loads((Path(report["bundle"]) / "manifest.json").read_text())
    int8 = next((a for a in manifest["artifacts"] if a["precision"] == "int8"), None)
    # An int8 artifact records its search; a search that kept no int8 (slower than fp32) is in int8_search.
    record = (int8 or {}).get("int8") or next(iter((manifest.get("int8_search") or {}).values()), {})
    parity = (int8 or {}).get("parity") or {}
    part = record.get("report_part") or {}
    return {"model": model, "target": target, "recipe": (record.get("recipe") or {}).get("label") or (int8 or {}).get("quantization"),
            "layers_in_float": [f["user_name"] for f in record.get("layers_in_float") or []],
            "status": record.get("status", "int8" if int8 else "no int8"),
            "top1": part.get("top1"), "drop": part.get("drop"), "agreement": part.get("agreement"),
            "report_samples": part.get("samples"),
            # The kept file's parity; where none was kept (missed, slower), the decision's own whole-golden score.
            "agreement_whole_golden": parity.get("top1_agreement", (record.get("whole_golden") or {}).get("agreement")),
            "distillation": (record.get("recipe") or {}).get("distillation"),
            "scored_with": record.get("scored_with"),
            "p50_int8_ms": p50.get("int8"), "p50_full_int8_ms": record.get("full_int8_p50_ms"),
            "p50_fp32_ms": p50.get("fp32"), "search_s": record.get("search_s"),
            "requantized": bool((record.get("recipe") or {}).get("requantized")),
            "search_p50_ms": _search_p50(record), "speedup_kept": _speedup_kept(record)}


def _search_p50(record: dict) -> dict:
    """The search's own timings of the chosen mix, full int8 and fp32 (one process, one run: comparable)."""
    return {"mix": record.get("p50_ms"), "full_int8": record.get("full_int8_p50_ms"), "fp32": record.get("fp32_p50_ms")}


def _speedup_kept(record: dict) -> float | None:
    """Share of full int8's speed-up over fp32 that the chosen mix keeps: (fp32 - mix) / (fp32 - full)."""
    p50 = _search_p50(record)
    if None in p50.values() or p50["fp32"] <= p50["full_int8"]:
        return None
    return round((p50["fp32"] - p50["mix"]) / (p50["fp32"] - p50["full_int8"]), 3)


def markdown(rows: list[dict]) -> str:
    lines = ["| model | target | recipe | layers in float | top-1 % | drop | agreement (report part) | p50 search mix / full / fp32 "
             "| speed-up kept | p50 bench int8 / fp32 | search s | status |", "|" + "---|" * 12]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['target']} | error: {r['error']} |" + " |" * 9)
            continue
        sp = r["search_p50_ms"]
        fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        floats = f"{len(r['layers_in_float'])}" + (f": {', '.join(r['layers_in_float'])}" if r["layers_in_float"] else "")
        kept = "–" if r["speedup_kept"] is None else f"{r['speedup_kept']:.0%}"
        agreement = "–" if r["agreement"] is None else f"{r['agreement']:.2%}"
        recipe = f"{r['recipe']}{' (re-quantized)' if r['requantized'] else ''}"
        lines.append(f"| {r['model']} | {r['target']} | {recipe} | {floats} | {fmt(r['top1'])} | {fmt(r['drop'])} "
                     f"| {agreement} | {fmt(sp['mix'])} / {fmt(sp['full_int8'])} / {fmt(sp['fp32'])} | {kept} "
                     f"| {fmt(r['p50_int8_ms'])} / {fmt(r['p50_fp32_ms'])} | {fmt(r['search_s'])} | {r['status']} |")
    return "\n".join(lines)


def cpu_line() -> str:
    """The CPU the numbers come from, and whether it has VNNI (it decides what 8-bit weights cost)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), "unknown")
    flags = set(next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), []))
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    return f"CPU: {model}; {', '.join(have) or 'no AVX2'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "imagenet-sample"))
    parser.add_argument("--synsets", default=str(ROOT.parent / "shared" / "imagenet-synsets.txt"))
    parser.add_argument("--models", default="lite1,lite2")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--work", default=None, help="Keep the bundles here (default: a temporary folder).")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="edgecnn-int8-fallback-"))
    work.mkdir(parents=True, exist_ok=True)
    calib, golden = (work / "calib", work / "golden") if (work / "calib").is_dir() else split(Path(args.photos), work)
    rows = []
    for model in args.models.split(","):
        for target in args.targets.split(","):
            out = work / f"{model}-{target}"
            report = export(model, target, out, calib, golden, args.synsets)
            row = ({"model": model, "target": target, "error": report["error"]} if "error" in report
                   else row_for(model, target, report, bench_p50(out)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(cpu_line())
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_line(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
