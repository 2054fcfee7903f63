"""`torchrun --nproc-per-node 2 -m edgecnn train ...` on CPU: two gloo processes, one checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from test_train import _idx_folder


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_two_process_torchrun_trains_and_writes_one_checkpoint(tmp_path):
    data = f"idx:{_idx_folder(tmp_path / 'idx', n_train=160, n_test=40)}"
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "EDGECNN_DEBUG")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # CPU, gloo, one thread per process
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "edgecnn", "train", "lenet5", "--data", data, "--epochs", "2", "--batch-size", "32",
               "--out", str(out), "--threads", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    # Only rank 0 writes: one checkpoint, one metrics file, no temp files, no leftover last.pt.
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]
    assert result.stderr.count("wrote ") == 1 and result.stdout.count("test top-1") == 1

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 2
    # The sharded evaluation sums both ranks' counts: percentages of the whole split.
    assert metrics["data_summary"]["test"] == 40 and 0.0 <= metrics["test_top1"] <= 100.0
    assert metrics["test_top1"] * 40 / 100 == pytest.approx(round(metrics["test_top1"] * 40 / 100), abs=1e-2)

    from edgecnn.checkpoint import load_model

    loaded = load_model(out / "model.pt")
    assert loaded.name == "lenet5" and loaded.num_classes == 4
    assert not any(key.startswith("module.") for key in loaded.model.state_dict())
