"""Hostile fleet files (issue 23): numbers that are not numbers, a work folder that climbs out of the login
folder, a command with arguments. Refused when the file is read (exit 2, one line naming the key), before
any device is contacted; a command with arguments runs, word by word.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.errors import BadInputError
from edgecnn.remote.devices import Device, load_fleet
from edgecnn.remote.ssh import quote

REPO = Path(__file__).resolve().parent.parent


def _fleet(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(f'[devices.pi]\nssh = "pi@pi5.local"\n{body}\n')
    return path


@pytest.mark.parametrize("line", ["timeout_s = -1", "timeout_s = 0", "timeout_s = nan", "timeout_s = inf",
                                  'timeout_s = "soon"', "timeout_s = true"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(tmp_path, line):
    with pytest.raises(BadInputError, match=r"\[devices\.pi\]: timeout_s must be"):
        load_fleet(_fleet(tmp_path, line))


@pytest.mark.parametrize("workdir", ["../../", "..", ".cache/../../x", "~/../other", "/", "", ".", "/opt/../..",
                                     "7"])
def test_a_workdir_outside_the_login_folder_is_refused(tmp_path, workdir):
    line = f"workdir = {json.dumps(workdir)}" if workdir != "7" else "workdir = 7"
    with pytest.raises(BadInputError, match=r"\[devices\.pi\]: workdir"):
        load_fleet(_fleet(tmp_path, line))


@pytest.mark.parametrize("workdir, used", [("edgecnn/work", "edgecnn/work"), ("~/edgecnn", "edgecnn"),
                                           ("/opt/edgecnn", "/opt/edgecnn"), ("./w/", "w")])
def test_a_workdir_below_the_login_folder_or_stated_absolute_is_kept(tmp_path, workdir, used):
    (device,) = load_fleet(_fleet(tmp_path, f"workdir = {json.dumps(workdir)}"))
    assert device.workdir == used


@pytest.mark.parametrize("line", ['command = ""', 'command = "python3 -m \'edgecnn"', "command = 3",
                                  'profile = 5', 'ssh_config = 1'])
def test_a_command_or_profile_that_cannot_work_is_refused(tmp_path, line):
    text = f"{line}\n" if not line.startswith("ssh_config") else ""
    path = _fleet(tmp_path, text) if text else tmp_path / "fleet.toml"
    if not text:
        path.write_text(f'{line}\n[devices.pi]\nssh = "pi@pi5.local"\n')
    with pytest.raises(BadInputError, match=line.split(" ")[0]):
        load_fleet(path)


def test_a_bad_fleet_file_is_one_line_before_any_device_is_contacted(cli, tmp_path):
    path = _fleet(tmp_path, 'workdir = "../../"')
    for command in ("bench", "verify", "tune"):
        result = cli(command, str(tmp_path), "--fleet", str(path))
        assert result.exit_code == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "workdir" in lines[0], result.stderr
    assert not (tmp_path.parent / "bundles").exists()


def test_a_command_with_arguments_is_split_and_quoted_word_by_word(tmp_path):
    (device,) = load_fleet(_fleet(tmp_path, 'command = "python3 -m edgecnn"'))
    assert device.command_words == ("python3", "-m", "edgecnn")
    spaced = Device(name="x", ssh="x", command="'/opt/my env/bin/python' -m edgecnn")
    assert quote(*spaced.command_words, "device-agent", "probe") == "'/opt/my env/bin/python' -m edgecnn device-agent probe"


def test_the_probe_line_built_from_a_command_with_arguments_runs(tmp_path):
    """What the device's login shell gets for `command = "<python> -m edgecnn"`: it runs (it used to be one word)."""
    from edgecnn.remote import job

    sent = []

    class Shell:  # a Connection whose device is this machine's shell
        device = Device(name="here", ssh="here", command=f"{sys.executable} -m edgecnn")

        def run(self, command, **kwargs):
            sent.append(command)
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            return subprocess.run(["sh", "-c", command], capture_output=True, env=env, timeout=120)

    info = job.probe(Shell(), ())
    assert sent == [f"{sys.executable} -m edgecnn device-agent probe"]
    assert info["python"] and "runtimes" in info
