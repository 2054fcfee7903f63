"""Running `bench`, `verify`, `build` and `tune` on devices over SSH (`--on user@device`, `--fleet FILE.toml`).

    devices    who: SSH targets and fleet files
    ssh        how: the user's OpenSSH client, one multiplexed connection per device
    transfer   what is sent: the bundle's files, skipped where the device has the same sha256
    job        one device: probe, runtime check, lock, copy, run, fetch the JSON, clean up
    fleet      many devices in parallel, their JSON merged with a `device` object per row
    agent      the device side (`edgecnn device-agent`): probe, lock, receive — torch-free
    dispatch   one command on the devices named (run_remote): what --on/--fleet and Bundle.bench(on=...) call
"""

from __future__ import annotations

from edgecnn.remote.devices import Device, load_fleet, parse_target, select_devices
from edgecnn.remote.fleet import adopt_built_manifest, adopt_tuning, failures, merged_report, run_fleet
from edgecnn.remote.job import DeviceRun, RemoteJob, run_on_device
from edgecnn.remote.ssh import RemoteError, SshOptions
from edgecnn.remote.dispatch import RemoteOptions, RemoteRun, device_argv, run_remote

__all__ = ["Device", "DeviceRun", "RemoteError", "RemoteJob", "RemoteOptions", "RemoteRun", "SshOptions",
           "adopt_built_manifest", "adopt_tuning", "device_argv", "failures", "run_remote",
           "load_fleet", "merged_report", "parse_target", "run_fleet", "run_on_device", "select_devices"]
