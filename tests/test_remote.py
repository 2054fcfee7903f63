"""edgecnn.remote without a device: SSH targets, fleet files, the device agent's lock and copy, merging.

The runs over a real sshd (x86 and emulated arm64 devices) are in test_remote_devices.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from edgecnn.errors import BadInputError
from edgecnn.remote import agent
from edgecnn.remote.devices import load_fleet, parse_target, select_devices
from edgecnn.remote.fleet import merged_report
from edgecnn.remote.job import DeviceRun, RemoteJob, check_runtimes
from edgecnn.remote.ssh import RemoteError
from edgecnn.remote.transfer import local_files, remove_command


def test_ssh_targets_parse_user_host_and_port():
    device = parse_target("nvidia@orin.local:2222")
    assert (device.user, device.host, device.port, device.destination) == ("nvidia", "orin.local", 2222, "nvidia@orin.local")
    alias = parse_target("pi5")
    assert (alias.user, alias.host, alias.port, alias.name) == (None, "pi5", None, "pi5")
    assert parse_target("root@[::1]:22").destination == "root@::1"
    for bad in ("", "-oProxyCommand=x", "a@b@c", "host:99999", "pi@host:port"):
        with pytest.raises(BadInputError):
            parse_target(bad)


def test_fleet_file_names_devices_and_refuses_mistakes(tmp_path):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('ssh_config = "ssh_config"\n[devices.pi5]\nssh = "pi@pi5.local"\nprofile = "rpi5"\n'
                     '[devices.orin]\nssh = "nvidia@orin.local:2222"\ncommand = "/opt/venv/bin/edgecnn"\ntimeout_s = 60\n')
    pi5, orin = load_fleet(fleet)
    assert (pi5.name, pi5.ssh, pi5.profile, pi5.ssh_config) == ("pi5", "pi@pi5.local", "rpi5", str(tmp_path / "ssh_config"))
    assert (orin.port, orin.command, orin.timeout_s) == (2222, "/opt/venv/bin/edgecnn", 60.0)
    assert [d.name for d in select_devices(["x@y"], fleet)] == ["pi5", "orin", "x@y"]
    with pytest.raises(BadInputError, match="named twice"):
        select_devices(["a@b", "a@b"], None)
    fleet.write_text('[devices.pi5]\nssh = "pi@pi5"\nusername = "pi"\n')
    with pytest.raises(BadInputError, match="unknown key"):
        load_fleet(fleet)
    fleet.write_text("[devices]\n")
    with pytest.raises(BadInputError, match="no \\[devices.NAME\\]"):
        load_fleet(fleet)
    with pytest.raises(BadInputError, match="not found"):
        load_fleet(tmp_path / "missing.toml")


def test_the_example_fleet_file_loads():
    example = Path(__file__).resolve().parents[1] / "devices" / "fleets" / "example.toml"
    devices = load_fleet(example)
    assert devices and all(d.ssh for d in devices)


def test_probe_says_what_this_machine_has():
    info = agent.probe(["onnxruntime"])
    assert info["machine"] and info["python"] and info["emulated"] is None  # this test runs natively
    entry = info["runtimes"]["onnxruntime"]
    assert entry["extra"] == "onnxruntime" and entry["version"] and entry["import_error"] is None
    assert "torch" not in info["runtimes"]  # the eager baseline is never a device runtime


def test_missing_runtime_is_refused_with_the_pip_line():
    info = {"machine": "aarch64", "runtimes": {"onnxruntime": {"extra": "onnxruntime", "version": None}}}
    with pytest.raises(RemoteError, match=r"pi5 \(aarch64\) has no ONNX Runtime: run pip install 'edgecnn\[onnxruntime\]' there"):
        check_runtimes(parse_target("pi5"), info, ("onnxruntime",))
    broken = {"machine": "aarch64", "runtimes": {"onnxruntime": {"extra": "onnxruntime", "version": "1.0",
                                                                 "import_error": "ImportError: libc"}}}
    with pytest.raises(RemoteError, match="does not import"):
        check_runtimes(parse_target("pi5"), broken, ("onnxruntime",))


def test_the_lock_serializes_and_says_who_holds_it(tmp_path):
    """Two holders of one device's lock: the second waits, names the first, and gets it once the first lets go."""
    script = ("import json, sys; from pathlib import Path; from edgecnn.remote import agent; "
              "agent.hold_lock(Path(sys.argv[1]), json.loads(sys.argv[2]))")

    def holder(who):
        return subprocess.Popen([sys.executable, "-c", script, str(tmp_path), json.dumps({"who": who})],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    first = holder("alice@ws")
    assert json.loads(first.stdout.readline())["event"] == "locked"
    second = holder("bob@ws")
    busy = json.loads(second.stdout.readline())
    assert busy["event"] == "busy" and busy["holder"]["who"] == "alice@ws"
    time.sleep(0.3)
    assert second.poll() is None  # still waiting
    first.stdin.close()
    first.wait(timeout=10)
    assert json.loads(second.stdout.readline())["event"] == "locked"
    assert json.loads((tmp_path / agent.HOLDER_NAME).read_text())["who"] == "bob@ws"
    second.stdin.close()
    assert second.wait(timeout=10) == 0
    assert not (tmp_path / agent.HOLDER_NAME).exists()


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    stream.seek(0)
    return stream


def test_receive_writes_files_and_refuses_paths_out_of_the_folder(tmp_path):
    import hashlib

    received = agent.receive(tmp_path / "b", _tar({"manifest.json": b"{}", "onnx/model.onnx": b"abc"}))
    assert received["onnx/model.onnx"] == hashlib.sha256(b"abc").hexdigest()
    assert (tmp_path / "b" / "onnx" / "model.onnx").read_bytes() == b"abc"
    assert agent.hashes(tmp_path / "b") == received
    for evil in ("../escape", "/etc/evil"):
        with pytest.raises(ValueError, match="refusing"):
            agent.receive(tmp_path / "c", _tar({evil: b"x"}))
    assert not (tmp_path / "escape").exists()


def test_local_files_skip_hidden_staging_and_cleanup_removes_only_what_was_sent(tmp_path):
    (tmp_path / "b" / "onnx").mkdir(parents=True)
    (tmp_path / "b" / "manifest.json").write_text("{}")
    (tmp_path / "b" / "onnx" / "model.onnx").write_bytes(b"m")
    (tmp_path / "b" / ".staging-1").write_text("partial")
    assert [f.relative for f in local_files(tmp_path / "b")] == ["manifest.json", "onnx/model.onnx"]
    line = remove_command("w/bundles/b-1", ["onnx/model.onnx"], "w/runs/x")
    assert "rm -rf -- w/runs/x" in line and "w/bundles/b-1/onnx/model.onnx" in line and "manifest.json" not in line
    assert "w/bundles" not in remove_command("w/bundles/b-1", [], "w/runs/x")  # --keep: the bundle stays


def test_merged_report_puts_the_device_in_every_row_and_names_the_failed():
    job = RemoteJob(command="verify", source=Path("bundle"))
    ok = DeviceRun(device=parse_target("pi@pi5"), info={"machine": "aarch64", "cpu": "Cortex-A76", "python": "3.11.2",
                                                        "edgecnn": "0.1.0"},
                   payload={"passed": False, "artifacts": [{"name": "tflite", "passed": False}], "model": "m"})
    down = DeviceRun(device=parse_target("root@10.0.0.9"), error="root@10.0.0.9: unreachable (Connection refused)",
                     kind="unreachable")
    report = merged_report([ok, down], job)
    (row,) = report["artifacts"]
    assert row["device"] == {"name": "pi@pi5", "host": "pi@pi5", "machine": "aarch64", "cpu": "Cortex-A76",
                             "python": "3.11.2", "edgecnn": "0.1.0", "profile": None, "emulated": None}
    assert report["failed"] == ["root@10.0.0.9"] and report["failed_checks"] == ["pi@pi5"] and not report["passed"]
    assert report["runs"]["pi@pi5"]["model"] == "m"
    assert [d["ok"] for d in report["devices"]] == [True, False]


def test_remote_options_that_name_local_files_are_refused(cli, tmp_path):
    result = cli("verify", str(tmp_path), "--on", "pi@pi5", "--junit", str(tmp_path / "j.xml"))
    assert result.exit_code == 2 and "--junit" in result.output and "files on this machine" in result.output
    result = cli("bench", str(tmp_path), "--on", "not a target")
    assert result.exit_code == 2 and "is not an SSH target" in result.output


def _device_payloads():
    """The merged --json of bench and verify on a native and an emulated device (the shapes the CLI writes)."""
    pi = DeviceRun(device=parse_target("pi5"), info={"machine": "aarch64", "cpu": "Cortex-A76", "emulated": None})
    qemu = DeviceRun(device=parse_target("arm-device"), info={"machine": "aarch64", "cpu": "ARMv8", "emulated": "qemu-user"})

    def bench_rows(scale):
        return [{"name": n, "runtime": "tflite", "precision": p, "batch": b, "threads": 4,
                 "latency_ms": {"p50": ms * scale * b, "p99": ms * scale * b * 1.1}}
                for n, p, ms in (("tflite/model.tflite", "fp32", 4.0), ("tflite/model.int8.tflite", "int8", 2.0))
                for b in (1, 8)]

    for run, scale in ((pi, 1.0), (qemu, 30.0)):
        run.payload = {"artifacts": bench_rows(scale)}
    bench = merged_report([pi, qemu], RemoteJob(command="bench", source=Path("b")))
    for run, int8_passes in ((pi, False), (qemu, True)):
        run.payload = {"passed": int8_passes, "artifacts": [
            {"name": "tflite/model.tflite", "runtime": "tflite", "precision": "fp32", "passed": True, "agreement": 1.0},
            {"name": "tflite/model.int8.tflite", "runtime": "tflite", "precision": "int8", "passed": int8_passes,
             "agreement": 0.96}]}
    verify = merged_report([pi, qemu], RemoteJob(command="verify", source=Path("b")))
    return bench, verify


def test_device_runs_side_by_side_and_what_to_ship_on_each():
    from edgecnn.report.devices import device_recommendations, device_section_html, device_table

    table = device_table(list(_device_payloads()))
    assert [d["name"] for d in table["devices"]] == ["pi5", "arm-device"]
    int8 = next(r for r in table["rows"] if r["precision"] == "int8")
    assert int8["per_device"]["pi5"] == {"p50_ms": 2.0, "p99_ms": 2.2, "batch": 1, "threads": 4, "passed": False,
                                         "top1": None, "agreement": 0.96}
    advice = device_recommendations(table)
    assert advice["pi5"].startswith("tflite/model.tflite (tflite fp32), p50 4.00 ms: fastest that passed verify")
    assert advice["arm-device"].startswith("emulated CPU (latency not meaningful)")
    page = device_section_html(table)
    assert "On your devices" in page and "pi5" in page and "(emulated)" in page and "FAIL" in page


def test_report_merges_device_runs_into_the_page(cli, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import make_run

    run_dir = make_run(tmp_path / "run")
    bench, verify = _device_payloads()
    files = []
    for name, payload in (("bench.json", bench), ("verify.json", verify)):
        files += ["--device-run", str(tmp_path / name)]
        (tmp_path / name).write_text(json.dumps(payload))
    result = cli("report", str(run_dir), *files)
    assert result.exit_code == 0, result.output
    assert "on pi5: tflite/model.tflite" in result.output
    assert sorted(p.name for p in (run_dir / "devices").iterdir()) == ["bench.json", "verify.json"]
    assert "On your devices" in (run_dir / "report.html").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["devices"]["recommendations"]) == {"pi5", "arm-device"}
    (tmp_path / "bad.json").write_text("{}")
    assert cli("report", str(run_dir), "--device-run", str(tmp_path / "bad.json")).exit_code == 2


def test_a_device_build_comes_back_into_the_local_manifest(tmp_path):
    """`build --on`: the engine entries (provenance, sha256) join the local manifest; the file stays there unless fetched."""
    import hashlib

    from edgecnn.remote.fleet import adopt_built_manifest

    sys.path.insert(0, str(Path(__file__).parent))
    from runtime_helpers import make_bundle

    bundle = make_bundle(tmp_path / "jetson", formats=("onnx",), target="jetson")
    manifest = json.loads((bundle / "manifest.json").read_text())
    engine = b"serialized engine bytes"
    entry = {"path": "tensorrt/model.fp16.engine", "format": "tensorrt", "runtime": "tensorrt", "precision": "fp16",
             "sha256": hashlib.sha256(engine).hexdigest(), "bytes": len(engine),
             "files": [{"path": "tensorrt/model.fp16.engine", "sha256": hashlib.sha256(engine).hexdigest(),
                        "bytes": len(engine)}], "provenance": {"tensorrt": "10.3.0", "gpu": "Orin"}}
    device_manifest = json.dumps({**manifest, "artifacts": manifest["artifacts"] + [entry]}).encode()
    run = DeviceRun(device=parse_target("nvidia@orin"), info={"machine": "aarch64"},
                    payload={"engines": [{"path": entry["path"], "precision": "fp16", "provenance": entry["provenance"]}]},
                    fetched={"manifest.json": device_manifest}, transfer={"remote_folder": "w/bundles/jetson-1"})
    assert adopt_built_manifest(bundle, run) == [entry["path"]]
    adopted = json.loads((bundle / "manifest.json").read_text())["artifacts"][-1]
    assert adopted["provenance"]["gpu"] == "Orin" and adopted["on_device"]["folder"] == "w/bundles/jetson-1"
    assert not (bundle / entry["path"]).exists()
    run.fetched[entry["path"]] = engine  # --fetch-engine
    adopt_built_manifest(bundle, run)
    artifacts = json.loads((bundle / "manifest.json").read_text())["artifacts"]
    assert [a["path"] for a in artifacts].count(entry["path"]) == 1 and "on_device" not in artifacts[-1]
    assert (bundle / entry["path"]).read_bytes() == engine


def test_atomic_writes_go_into_a_pipe_instead_of_replacing_it(tmp_path):
    """`--json /dev/null` as root used to rename a regular file over /dev/null (the CI sshd then failed to start)."""
    import os
    import stat
    import threading

    from edgecnn.atomic import write_json_atomic

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_json_atomic(fifo, {"ok": True})
    reader.join(timeout=10)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and json.loads(received[0]) == {"ok": True}
