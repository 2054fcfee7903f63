"""`--on`/`--fleet` over a real sshd on 127.0.0.1 to the CI devices that .ci/devices.sh sets up.

    x86-device   a venv with only edgecnn[onnxruntime,litert,openvino-runtime] (no torch)
    arm-device   a Debian arm64 root under qemu-user with only edgecnn[litert]; `uname -m` says aarch64

The tests find the setup through $EDGECNN_CI_DEVICES (default /tmp/edgecnn-ci-devices)/setup.json and
skip, saying why, when it is not there (run `.ci/devices.sh` as root; `.ci/run` does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime_helpers import make_bundle, reference_logits, sample_batch

STATE = Path(os.environ.get("EDGECNN_CI_DEVICES", "/tmp/edgecnn-ci-devices"))
SETUP = STATE / "setup.json"
FAST = ["--warmup", "1", "--iters", "5"]


def _setup() -> dict:
    try:
        return json.loads(SETUP.read_text())
    except (OSError, ValueError):
        return {"ssh": None, "ssh_skip": f"no CI devices ({SETUP} missing): run .ci/devices.sh as root",
                "arm": None, "arm_skip": f"no CI devices ({SETUP} missing): run .ci/devices.sh as root"}


SETUP_INFO = _setup()
_sshd_alive = (STATE / "sshd.pid").is_file() and Path(f"/proc/{(STATE / 'sshd.pid').read_text().strip()}").exists()
ssh_devices = pytest.mark.skipif(
    not SETUP_INFO.get("ssh") or not _sshd_alive,
    reason=SETUP_INFO.get("ssh_skip") or f"the CI sshd is not running ({STATE}/sshd.pid): run .ci/devices.sh as root")
arm_device = pytest.mark.skipif(not SETUP_INFO.get("arm"), reason=f"no emulated arm64 device: {SETUP_INFO.get('arm_skip')}")
pytestmark = [pytest.mark.ssh, ssh_devices, pytest.mark.timeout(900)]


def edgecnn(*args: str, config: str | None = None, check: int | None = None) -> subprocess.CompletedProcess:
    """The workstation's `edgecnn`, in a process of its own (as a user runs it), with the CI ssh config."""
    env = {**os.environ, "EDGECNN_SSH_CONFIG": config or SETUP_INFO["ssh_config"], "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, env=env,
                          timeout=900)
    if check is not None:
        assert done.returncode == check, done.stderr + done.stdout
    return done


def on_device(device: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", SETUP_INFO["ssh_config"], device, command], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def tflite_bundle(tmp_path_factory) -> Path:
    """A tiny .tflite bundle with a golden set (what both devices can run: each has LiteRT)."""
    from edgecnn.bundle import GOLDEN_NAME, file_sha256, write_golden

    root = make_bundle(tmp_path_factory.mktemp("remote") / "tiny-tflite", formats=("tflite",), target="arm")
    inputs = sample_batch(32)
    logits = reference_logits(inputs)
    write_golden(root / GOLDEN_NAME, inputs, logits.argmax(1).astype(np.int64), logits)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["golden"] = {"path": GOLDEN_NAME, "sha256": file_sha256(root / GOLDEN_NAME), "samples": 32}
    manifest["model"]["accuracy_meaningful"] = False  # random weights: agreement is the check
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _copy(bundle: Path, dest: Path) -> Path:
    return Path(shutil.copytree(bundle, dest))


def test_the_devices_are_what_they_say():
    assert on_device("x86-device", "uname -m").stdout.strip() == "x86_64"
    assert on_device("x86-device", "python -c 'import torch'").returncode != 0  # torch-free device


@arm_device
@pytest.mark.arm_emulated
def test_bench_on_the_x86_and_the_arm_device_in_one_command(tflite_bundle, tmp_path):
    out = tmp_path / "bench.json"
    done = edgecnn("bench", str(tflite_bundle), "--on", "x86-device", "--on", "arm-device", *FAST, "--json", str(out),
                   check=0)
    report = json.loads(out.read_text())
    machines = {row["device"]["name"]: row["device"]["machine"] for row in report["artifacts"]}
    assert machines == {"x86-device": "x86_64", "arm-device": "aarch64"}
    for row in report["artifacts"]:
        assert set(row["device"]) >= {"name", "host", "machine", "cpu", "python", "edgecnn"}
        assert row["latency_ms"]["p50"] > 0
    emulated = {d["device"]["name"]: d["device"]["emulated"] for d in report["devices"]}
    assert emulated["x86-device"] is None and "qemu" in emulated["arm-device"]
    assert "x86-device" in done.stdout and "arm-device" in done.stdout and "(qemu)" in done.stdout
    assert report["failed"] == []
    assert on_device("arm-device", "python3 -c 'import torch'").returncode != 0


@arm_device
@pytest.mark.arm_emulated
def test_verify_on_the_emulated_arm_device(tflite_bundle, tmp_path):
    out = tmp_path / "verify.json"
    edgecnn("verify", str(tflite_bundle), "--on", "arm-device", "--json", str(out), check=0)
    report = json.loads(out.read_text())
    (row,) = report["artifacts"]
    assert row["device"]["machine"] == "aarch64" and row["passed"] and row["agreement"] >= 0.995
    assert report["passed"] is True


def test_unknown_host_key_is_refused_with_the_keyscan_line(tflite_bundle, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(Path(SETUP_INFO["ssh_config"]).read_text().replace(str(STATE / "known_hosts"), str(known)))
    done = edgecnn("bench", str(tflite_bundle), "--on", "x86-device", *FAST, config=str(config), check=1)
    assert "unknown host key" in done.stderr and f"ssh-keyscan -p 22022 127.0.0.1 >> {known}" in done.stderr
    assert "--accept-new-host-key" in done.stderr and known.read_text() == ""
    edgecnn("bench", str(tflite_bundle), "--on", "x86-device", *FAST, "--accept-new-host-key", config=str(config), check=0)
    assert "127.0.0.1]:22022" in known.read_text()  # recorded: the next run checks it strictly


def test_identity_option_logs_in_with_that_key(tflite_bundle, tmp_path):
    config = tmp_path / "ssh_config"
    text = Path(SETUP_INFO["ssh_config"]).read_text()
    config.write_text("\n".join(line for line in text.splitlines() if "IdentityFile" not in line) + "\n")
    done = edgecnn("bench", str(tflite_bundle), "--on", "x86-device", *FAST, config=str(config), check=1)
    assert "login refused" in done.stderr and "--identity FILE" in done.stderr
    edgecnn("bench", str(tflite_bundle), "--on", "x86-device", *FAST, "--identity", str(STATE / "id_ed25519"),
            config=str(config), check=0)


@arm_device
@pytest.mark.arm_emulated
def test_a_device_without_the_runtime_is_refused_naming_the_extra(tmp_path):
    bundle = make_bundle(tmp_path / "ov", formats=("openvino",), target="x86")
    done = edgecnn("bench", str(bundle), "--on", "arm-device", *FAST, check=1)  # only edgecnn[litert] there
    assert "arm-device (aarch64) has no OpenVINO: run pip install 'edgecnn[openvino-runtime]' there" in done.stderr


def test_one_device_down_while_the_other_succeeds(tflite_bundle, tmp_path):
    out = tmp_path / "bench.json"
    done = edgecnn("bench", str(tflite_bundle), "--on", "x86-device", "--on", "root@127.0.0.1:1", *FAST,
                   "--json", str(out), check=1)
    report = json.loads(out.read_text())
    assert report["failed"] == ["root@127.0.0.1:1"]
    assert {row["device"]["name"] for row in report["artifacts"]} == {"x86-device"}
    down = [d for d in report["devices"] if not d["ok"]]
    assert down[0]["kind"] == "unreachable" and "Connection refused" in down[0]["error"]
    assert "1 of 2 device(s) failed" in done.stderr and "root@127.0.0.1:1: unreachable" in done.stderr


def test_two_runs_on_one_device_serialize_on_its_lock(tflite_bundle, tmp_path):
    holder = ".cache/edgecnn/remote/lock.holder.json"
    env = {**os.environ, "EDGECNN_SSH_CONFIG": SETUP_INFO["ssh_config"]}
    args = [sys.executable, "-m", "edgecnn", "bench", str(tflite_bundle), "--on", "x86-device", "--warmup", "1"]
    first = subprocess.Popen(args + ["--min-time", "4", "--json", str(tmp_path / "a.json")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while on_device("x86-device", f"test -s {holder}").returncode != 0:
        assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
        time.sleep(0.3)
    second = subprocess.run(args + ["--iters", "5", "--json", str(tmp_path / "b.json")], env=env,
                            capture_output=True, text=True, timeout=600)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, first_err + second.stderr
    assert "waiting for the device lock, held by" in second.stderr and "edgecnn bench" in second.stderr
    assert "waiting" not in first_err
    a, b = (json.loads((tmp_path / n).read_text())["devices"][0] for n in ("a.json", "b.json"))
    assert a["ok"] and b["ok"]


def test_second_run_copies_nothing_unchanged_and_the_copy_is_removed(tflite_bundle, tmp_path):
    bundle = _copy(tflite_bundle, tmp_path / "kept")
    files = sum(1 for p in bundle.rglob("*") if p.is_file())

    def run(*extra):
        out = tmp_path / "out.json"
        edgecnn("bench", str(bundle), "--on", "x86-device", *FAST, "--json", str(out), *extra, check=0)
        return json.loads(out.read_text())["devices"][0]["transfer"]

    first = run("--keep")
    assert (first["copied"], first["unchanged"]) == (files, 0)
    assert on_device("x86-device", f"test -d {first['remote_folder']}").returncode == 0  # kept
    again = run("--keep")
    assert (again["copied"], again["unchanged"], again["bytes_copied"]) == (0, files, 0)
    (bundle / "notes.txt").write_text("changed")
    changed = run()  # not kept: only what this run sent goes away
    assert (changed["copied"], changed["unchanged"]) == (1, files)
    assert on_device("x86-device", f"test -e {changed['remote_folder']}/notes.txt").returncode != 0
    assert on_device("x86-device", f"test -e {changed['remote_folder']}/manifest.json").returncode == 0
    on_device("x86-device", f"rm -rf {changed['remote_folder']}")
    fresh = run()
    assert fresh["copied"] == files + 1
    assert on_device("x86-device", f"test -e {fresh['remote_folder']}").returncode != 0  # removed: it sent all
    assert on_device("x86-device", "ls .cache/edgecnn/remote/runs").stdout.strip() == ""


def test_fleet_file_runs_the_named_devices(tflite_bundle, tmp_path):
    out = tmp_path / "bench.json"
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'ssh_config = "{SETUP_INFO["ssh_config"]}"\n[devices.lab-x86]\nssh = "x86-device"\nprofile = "x86"\n')
    edgecnn("bench", str(tflite_bundle), "--fleet", str(fleet), *FAST, "--json", str(out), check=0)
    (row,) = json.loads(out.read_text())["artifacts"]
    assert row["device"]["name"] == "lab-x86" and row["device"]["profile"] == "x86"


def test_build_on_a_device_without_tensorrt_names_the_extra(tmp_path):
    from edgecnn.profiles import load_profile

    bundle = make_bundle(tmp_path / "jetson", formats=("onnx",), target="jetson")
    assert load_profile("jetson").runtime == json.loads((bundle / "manifest.json").read_text())["profile"]["runtime"]
    done = edgecnn("build", str(bundle), "--on", "x86-device", check=1)
    assert "has no TensorRT: run pip install 'edgecnn[tensorrt]' there" in done.stderr


def test_tune_on_a_device_brings_its_tuning_back(tflite_bundle, tmp_path):
    """tune --on: the device's own sweep; its tuning/<signature>.json and manifest record land in the local
    bundle (sha256 intact), nothing is left on the device, and bench --on that device then uses it."""
    from edgecnn.bundle import file_sha256

    bundle = _copy(tflite_bundle, tmp_path / "tuned")
    out = tmp_path / "tune.json"
    done = edgecnn("tune", str(bundle), "--on", "x86-device", "--budget", "60", "--min-time", "0.2", "--warmup", "2",
                   "--json", str(out), check=0)
    report = json.loads(out.read_text())
    relative = report["adopted"]["x86-device"]
    assert relative and relative.startswith("tuning/") and (bundle / relative).is_file()
    (record,) = [r for r in json.loads((bundle / "manifest.json").read_text())["tuning"] if r["path"] == relative]
    assert record["sha256"] == file_sha256(bundle / relative)
    assert {row["device"]["machine"] for row in report["artifacts"]} == {"x86_64"}
    assert "x86-device: tuned" in done.stderr
    folder = report["devices"][0]["transfer"]["remote_folder"]
    assert on_device("x86-device", f"test -e {folder}").returncode != 0  # the copy and the tuning file removed
    benched = tmp_path / "bench.json"
    edgecnn("bench", str(bundle), "--on", "x86-device", *FAST, "--json", str(benched), check=0)
    assert json.loads(benched.read_text())["artifacts"]
