"""One command on many devices, from the library: what `--on`/`--fleet` do, callable from Python.

`run_remote` builds the job for `edgecnn COMMAND BUNDLE` (the options the device's own edgecnn takes,
the runtimes it must have, the files to bring back), runs it on every device, merges their JSON and
adopts what a build or a tune wrote there into the local bundle. It prints nothing: the caller
(the CLI, or `edgecnn.Bundle.bench(on=...)`) gets a `RemoteRun` and says what it likes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from edgecnn.remote.devices import select_devices
from edgecnn.remote.fleet import adopt_built_manifest, adopt_tuning, failures, merged_report, run_fleet
from edgecnn.remote.job import DeviceRun, RemoteJob
from edgecnn.remote.ssh import SshOptions

Note = Callable[[str], None]
REMOTE_COMMANDS = ("bench", "verify", "build", "tune")


@dataclass(frozen=True)
class RemoteOptions:
    """Where bench, verify, build and tune run when not here: devices, and how to reach them."""

    on: Optional[Sequence[str]] = None  # user@host[:port] or ~/.ssh/config Host names
    fleet: Optional[Path] = None  # a fleet TOML file
    identity: Optional[Path] = None  # an SSH private key (default: the user's ssh config and agent)
    accept_new_host_key: bool = False
    keep: bool = False  # leave the copied bundle on the device

    @property
    def requested(self) -> bool:
        """A device was named: the command runs there, not here."""
        return bool(self.on or self.fleet)


@dataclass
class RemoteRun:
    """What one command did on every device: the merged JSON (the CLI's `--json`) and each device's run."""

    command: str
    report: dict[str, Any]
    runs: list[DeviceRun] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per device that did not finish or whose verification failed."""
        return failures(self.runs) + [f"{name}: verification failed" for name in self.report.get("failed_checks", [])]

    @property
    def passed(self) -> bool:
        """Every device finished (and, for verify, every artifact passed there)."""
        return not self.problems


def run_remote(command: str, path: str | Path, *, options: RemoteOptions, forwarded: Mapping[str, Any],
               runtime: Optional[str] = None, fetch_engine: bool = False, note: Note | None = None) -> RemoteRun:
    """Run `edgecnn COMMAND PATH` with the `forwarded` options (flag -> value) on the devices `options` name."""
    if command not in REMOTE_COMMANDS:
        raise ValueError(f"{command!r} does not run on devices (only {', '.join(REMOTE_COMMANDS)})")
    note = note or (lambda message: None)
    path = Path(path)
    devices = select_devices(list(options.on) if options.on else None,
                             Path(options.fleet) if options.fleet else None)
    job = RemoteJob(command=command, source=_source(path), args=tuple(device_argv(forwarded)),
                    runtimes=_runtimes(command, path, runtime),
                    fetch=("manifest.json",) if command in ("build", "tune") else (), fetch_new=fetch_engine,
                    fetch_reported=("tuning_file",) if command == "tune" else ())
    note(f"{command} on {len(devices)} device(s): {', '.join(d.name for d in devices)}")
    ssh = SshOptions(identity=options.identity, accept_new_host_key=options.accept_new_host_key)
    runs = run_fleet(devices, job, ssh, keep=options.keep, note=note)
    report = merged_report(runs, job)
    if command == "build":
        report["adopted"] = {r.device.name: adopt_built_manifest(job.source, r) for r in runs if r.ok}
    if command == "tune":
        report["adopted"] = {r.device.name: adopt_tuning(job.source, r) for r in runs if r.ok}
    return RemoteRun(command=command, report=report, runs=runs)


def device_argv(forwarded: Mapping[str, Any]) -> list[str]:
    """The device's command-line options, from the ones given here (None, False and [] left out)."""
    argv = []
    for flag, value in forwarded.items():
        if value is None or value is False or value == [] or value == ():
            continue
        if value is True:
            argv.append(flag)
        else:
            items = value if isinstance(value, (list, tuple)) else [value]
            argv += [part for item in items for part in (flag, str(item))]
    return argv


def _source(path: Path) -> Path:
    return path.parent if path.name == "manifest.json" else path


def _runtimes(command: str, path: Path, runtime: Optional[str]) -> tuple[str, ...]:
    """The runtimes the devices need for this job (what the local bundle holds, or the runtime asked for)."""
    from edgecnn.backends import backends, resolve_runtime, runtime_for_path
    from edgecnn.bundle import load_bundle

    if runtime is not None:
        return (resolve_runtime(runtime),)
    if path.is_file() and path.name != "manifest.json":
        return (runtime_for_path(path),)
    bundle = load_bundle(path)
    if command == "build":
        builders = {b.name for b in backends() if b.device_build}
        return tuple(sorted({(bundle.profile or {}).get("runtime")} & builders))
    return tuple(dict.fromkeys(entry.runtime for entry in bundle.artifacts))


__all__ = ["REMOTE_COMMANDS", "RemoteOptions", "RemoteRun", "device_argv", "run_remote"]
