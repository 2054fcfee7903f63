"""Faults an export must survive cleanly: a killed earlier export's staging folders, a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest


def _export(cli, source, out, *extra):
    return cli("export", str(source), "--target", "onnx", "--out", str(out), *extra)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_staging_of_a_killed_export_is_reaped(cli, lenet_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    dead = _dead_pid()
    # What SIGKILL leaves: the staging and scratch folders of a process that no longer exists.
    stale = [tmp_path / f".bundle.staging-{dead}-x1y2", tmp_path / f".bundle.scratch-{dead}-z3"]
    for folder in stale:
        (folder / "onnx").mkdir(parents=True)
        (folder / "onnx" / "model.fp32.onnx").write_bytes(b"half written")
    live = tmp_path / f".bundle.staging-{os.getpid()}-live"  # a live export's: never touched
    live.mkdir()
    other = tmp_path / ".otherbundle.staging-1-abc"  # another output's: not ours to reap
    other.mkdir()
    result = _export(cli, lenet_checkpoint, out)
    assert result.exit_code == 0, result.stderr
    assert not any(folder.exists() for folder in stale)
    assert live.is_dir() and other.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".otherbundle.staging-1-abc", live.name, "bundle"])


def test_full_disk_during_onnx_export_says_so(cli, lenet_checkpoint, tmp_path, monkeypatch):
    import torch

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", no_space)
    out = tmp_path / "bundle"
    result = _export(cli, lenet_checkpoint, out)
    assert result.exit_code == 2, result.stderr
    assert "no space left on device" in result.stderr and str(tmp_path) in result.stderr
    assert "opset" not in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_full_disk_anywhere_in_a_command_is_one_line(cli, lenet_checkpoint, tmp_path, monkeypatch):
    import numpy as np

    def no_space(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(np, "savez", no_space)  # the golden set is the last file written
    out = tmp_path / "bundle"
    result = _export(cli, lenet_checkpoint, out)
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on device writing"), result.stderr
    assert "golden.npz" in errors[0] and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", ["bench", "verify"])
def test_unwritable_json_path_is_refused_before_any_work(cli, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli(command, str(tmp_path / "nothing-here"), "--json", str(blocker / "x.json"))
    assert result.exit_code == 2
    assert str(blocker) in result.stderr
