"""Speed decisions on a busy machine: an int8 export of EfficientNet-Lite1 for `onnx` with one busy process
beside it, every speed decision it took (a candidate against fp32) checked afterwards by quiet `edgecnn bench`
runs of the same two files.

The export runs in this process so that each decision's two files can be copied when it is taken: the search's
`_Measure.settle` (the side-by-side timing that decides) is wrapped to copy the candidate and the fp32 file and
record the paired ratio and the load average it was taken under. The busy process is one CPU-bound Python
process (a numpy matmul loop on one thread) started before the export and stopped after it. Then, with the
machine quiet, each candidate and fp32 are benched alternately (`edgecnn bench FILE --batch 1`, each in its own
process, 10 warm-up runs, >= 3 s timed, p50), REPEATS times each; the quiet verdict is the median of the
paired p50 ratios. A decision holds when both say the same ("faster than fp32" or not).

Photos: ../shared/imagenet-sample split as benchmarks/int8_fallback.py does (every third class calibrates,
the rest is the golden set).

    python benchmarks/int8_busy_export.py --work /tmp/busy --json benchmarks/int8_busy_export.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_fallback import ROOT, cpu_line, split  # noqa: E402

REPEATS = 3
BUSY = "import numpy as np\na = np.random.rand(400, 400)\nwhile True:\n    a @ a\n"


def busy_process() -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", BUSY], env=env)


def export_recording(out: Path, calib: Path, golden: Path, synsets: str, keep: Path) -> tuple[int, list[dict]]:
    """Export Lite1 int8 for onnx in this process; every side-by-side decision's files copied into `keep`."""
    from typer.testing import CliRunner

    from edgecnn.cli import app
    from edgecnn.quantize import fallback

    decisions: list[dict] = []
    original = fallback._Measure.settle

    def settle(self, trial, fp32_p50):
        original(self, trial, fp32_p50)
        if trial.interleaved is None or trial.artifact is None:
            return
        index = len(decisions)
        shutil.copy(trial.artifact, keep / f"candidate{index}.onnx")
        if not (keep / "fp32.onnx").exists():
            shutil.copy(self.fp32_path, keep / "fp32.onnx")
        decisions.append({"candidate": trial.label, "file": f"candidate{index}.onnx",
                          "busy": dict(trial.interleaved), "busy_faster": trial.interleaved["ratio"] < 1.0})

    fallback._Measure.settle = settle
    try:
        result = CliRunner().invoke(app, [
            "export", f"{ROOT / 'examples' / 'efficientnet_lite.py'}:lite1", "--input-size", "240",
            "--mean", "0.498,0.498,0.498", "--std", "0.502,0.502,0.502", "--classes", synsets,
            "--calib-data", f"imagefolder:{calib}", "--golden-data", f"imagefolder:{golden}", "--calib-size", "100",
            "--golden-size", "200", "--target", "onnx", "--precision", "int8", "--out", str(out), "--force",
            "--json", str(out) + ".json"])
    finally:
        fallback._Measure.settle = original
    if result.exit_code != 0:
        print(result.stdout[-2000:], file=sys.stderr)
    return result.exit_code, decisions


def quiet_p50(path: Path) -> float:
    out = Path(tempfile.mkdtemp()) / "bench.json"
    done = subprocess.run([sys.executable, "-m", "edgecnn", "bench", str(path), "--batch", "1", "--json", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-1000:])
    (row,) = json.loads(out.read_text())["artifacts"]
    return float(row["latency_ms"]["p50"])


def quiet_check(keep: Path, decision: dict) -> dict:
    ratios, pairs = [], []
    for _ in range(REPEATS):
        candidate, fp32 = quiet_p50(keep / decision["file"]), quiet_p50(keep / "fp32.onnx")
        pairs.append([round(candidate, 3), round(fp32, 3)])
        ratios.append(candidate / fp32)
    ratio = float(np.median(ratios))
    return {"p50_pairs_ms": pairs, "ratio": round(ratio, 4), "faster": ratio < 1.0,
            "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(ROOT.parent / "shared" / "imagenet-sample"))
    parser.add_argument("--synsets", default=str(ROOT.parent / "shared" / "imagenet-synsets.txt"))
    parser.add_argument("--work", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="edgecnn-busy-"))
    work.mkdir(parents=True, exist_ok=True)
    calib, golden = (work / "calib", work / "golden") if (work / "calib").is_dir() else split(Path(args.photos), work)
    keep = work / "decisions"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir()
    busy, started = busy_process(), time.time()
    try:
        code, decisions = export_recording(work / "lite1-onnx", calib, golden, args.synsets, keep)
    finally:
        busy.kill()
        busy.wait()
    export_s = time.time() - started
    time.sleep(10)  # let the load average fall
    manifest = json.loads((work / "lite1-onnx" / "manifest.json").read_text()) if code == 0 else {}
    int8 = next((a for a in manifest.get("artifacts", []) if a["precision"] == "int8"), None)
    record = (int8 or {}).get("int8") or next(iter((manifest.get("int8_search") or {}).values()), {})
    for decision in decisions:
        decision["quiet"] = quiet_check(keep, decision)
        decision["holds"] = decision["quiet"]["faster"] == decision["busy_faster"]
        print(json.dumps(decision), flush=True)
    summary = {"cpu": cpu_line(), "export_exit": code, "export_s": round(export_s, 1),
               "kept_int8": int8 is not None, "status": record.get("status"), "note": record.get("note"),
               "layers_in_float": [f["user_name"] for f in record.get("layers_in_float") or []],
               "decisions": decisions, "all_hold": all(d["holds"] for d in decisions)}
    print(json.dumps({k: v for k, v in summary.items() if k != "decisions"}, indent=2))
    for d in decisions:
        b, q = d["busy"], d["quiet"]
        print(f"{d['candidate'][:60]:60s} busy ratio {b['ratio']:.3f} (load {b['load_average'][0]:.1f}) -> "
              f"{'faster' if d['busy_faster'] else 'not faster'}; quiet ratio {q['ratio']:.3f} -> "
              f"{'faster' if q['faster'] else 'not faster'}; {'holds' if d['holds'] else 'DIFFERS'}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
