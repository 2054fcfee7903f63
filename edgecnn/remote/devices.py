"""The devices a remote run goes to: `--on SSH_TARGET` (repeatable) and `--fleet FILE.toml`.

An SSH target is what the user types to `ssh`: `pi@pi5.local`, `nvidia@orin.local:2222`, or a `Host`
alias of their `~/.ssh/config`. A fleet file names devices:

    ssh_config = "~/.ssh/config"        # optional: another OpenSSH config file for every device

    [devices.pi5]
    ssh = "pi@pi5.local"                # required
    profile = "rpi5"                    # optional: the device profile it is (shown, not enforced)
    command = "edgecnn"                 # optional: the edgecnn command on the device (may have words: "python3 -m edgecnn")
    workdir = ".cache/edgecnn/remote"   # optional: where bundles go, below the login folder (or an absolute path)
    timeout_s = 1800                    # optional: give up on this device after S seconds
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from edgecnn import validate
from edgecnn.errors import BadInputError

DEFAULT_COMMAND = "edgecnn"
DEFAULT_WORKDIR = ".cache/edgecnn/remote"
DEFAULT_TIMEOUT_S = 1800.0
_FLEET_KEYS = {"ssh", "profile", "command", "workdir", "timeout_s"}
# user@host:port, host:port, [v6]:port; a plain alias has neither '@' nor ':'
_TARGET = re.compile(r"^(?:(?P<user>[^@\s/]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^@:\s/\[\]]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Device:
    """One device to run on: its name in tables, how to reach it, and what to run there."""

    name: str
    ssh: str  # the target as given: user@host[:port] or a Host alias
    user: str | None = None
    host: str = ""
    port: int | None = None
    profile: str | None = None
    command: str = DEFAULT_COMMAND
    workdir: str = DEFAULT_WORKDIR
    timeout_s: float = DEFAULT_TIMEOUT_S
    ssh_config: str | None = None  # an OpenSSH config file (-F) for this device

    @property
    def command_words(self) -> tuple[str, ...]:
        """The edgecnn command as words (`python3 -m edgecnn`): each one is shell-quoted on its own."""
        return validate.command_words(self.command, f"device {self.name}: command")

    @property
    def destination(self) -> str:
        """What goes on the ssh command line (the port goes to -p)."""
        host = self.host.strip("[]")
        return f"{self.user}@{host}" if self.user else host


def parse_target(target: str, *, name: str | None = None, **fields: Any) -> Device:
    """A Device from `user@host[:port]` (a BadInputError saying the accepted forms otherwise)."""
    text = target.strip()
    if text.startswith("ssh://"):
        text = text[len("ssh://"):]
    match = _TARGET.match(text)
    if not match or text.startswith("-"):
        raise BadInputError(
            f"--on {target!r} is not an SSH target: use user@host, user@host:port or a Host alias of ~/.ssh/config"
        )
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise BadInputError(f"--on {target!r}: port {port} is out of range (1-65535)")
    return Device(name=name or text, ssh=text, user=match["user"], host=match["host"],
                  port=int(port) if port else None, **fields)


def load_fleet(path: str | Path) -> list[Device]:
    """The devices a fleet TOML file names, in file order."""
    from edgecnn.profiles import tomllib

    from edgecnn.atomic import read_document

    path = Path(path).expanduser()
    data = read_document(path, tomllib.loads, (tomllib.TOMLDecodeError,), what="--fleet", kind="TOML")
    table = data.get("devices")
    if not isinstance(table, dict) or not table:
        raise BadInputError(f"--fleet {path}: no [devices.NAME] tables (each needs ssh = \"user@host\")")
    ssh_config = data.get("ssh_config")
    if ssh_config is not None and not isinstance(ssh_config, str):
        raise BadInputError(f"--fleet {path}: ssh_config must be a file path, got {ssh_config!r}")
    if ssh_config is not None:
        ssh_config = str((path.parent / Path(str(ssh_config)).expanduser()).resolve())
    return [_fleet_device(path, name, spec, ssh_config) for name, spec in table.items()]


def _fleet_device(path: Path, name: str, spec: Any, ssh_config: str | None) -> Device:
    where = f"--fleet {path}: [devices.{name}]"
    if not isinstance(spec, dict) or not isinstance(spec.get("ssh"), str):
        raise BadInputError(f"{where} needs ssh = \"user@host\"")
    unknown = sorted(set(spec) - _FLEET_KEYS)
    if unknown:
        raise BadInputError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_FLEET_KEYS))})")
    timeout = validate.seconds(spec.get("timeout_s", DEFAULT_TIMEOUT_S), f"{where}: timeout_s")
    # Relative work folders start at the login folder and must stay below it: the lock, bundles and runs go there.
    workdir = validate.confined_folder(spec.get("workdir", DEFAULT_WORKDIR), f"{where}: workdir")
    command = spec.get("command", DEFAULT_COMMAND)
    validate.command_words(command, f"{where}: command")  # split (and quoted word by word) when it runs
    profile = spec.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise BadInputError(f"{where}: profile must be a device profile name, e.g. \"rpi5\", got {profile!r}")
    return parse_target(spec["ssh"], name=name, profile=profile, command=command, workdir=workdir, timeout_s=timeout,
                        ssh_config=ssh_config)


def select_devices(on: Iterable[str] | None, fleet: Path | None, *, ssh_config: str | None = None) -> list[Device]:
    """The devices of `--fleet` then of each `--on`; a name given twice is refused."""
    devices = load_fleet(fleet) if fleet is not None else []
    devices += [parse_target(target, ssh_config=ssh_config) for target in on or ()]
    names = [d.name for d in devices]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInputError(f"device {', '.join(twice)} is named twice: name each device once (one job per device at a time)")
    return devices
