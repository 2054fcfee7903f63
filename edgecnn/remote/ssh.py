"""One SSH connection to a device, through the OpenSSH client the user already has.

`ssh` itself, not a Python SSH library: it reads the user's `~/.ssh/config` (Host aliases, ProxyJump,
Match blocks), their agent and keys (FIDO ones too) and `known_hosts` exactly as their own logins do,
and it is on every workstation already. One master connection per device (ControlMaster) carries
every command of a job, so a job pays one handshake. BatchMode: never a password prompt, never a
stored password. Host keys are checked strictly against known_hosts unless the user passed
--accept-new-host-key; a refusal says the `ssh-keyscan` line that fixes it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadInputError, EdgecnnError
from edgecnn.remote.devices import Device

CONNECT_TIMEOUT_S = 15
ENV_SSH_CONFIG = "EDGECNN_SSH_CONFIG"  # an OpenSSH config file for every device (tests, CI)


class RemoteError(EdgecnnError):
    """A device could not be reached or its job failed; the message is one line with the fix (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, *, kind: str = "failed"):
        super().__init__(message)
        self.kind = kind  # host_key | unreachable | auth | timeout | missing | failed


@dataclass(frozen=True)
class SshOptions:
    """How to log in: the user's own OpenSSH setup plus what the command line adds."""

    identity: Path | None = None
    accept_new_host_key: bool = False


def require_ssh() -> str:
    path = shutil.which("ssh")
    if path is None:
        raise BadInputError("the OpenSSH client `ssh` is not installed here: apt-get install openssh-client "
                            "(or your system's openssh package)")
    return path


class Connection:
    """Commands on one device over one multiplexed OpenSSH connection."""

    def __init__(self, device: Device, options: SshOptions):
        self.device = device
        self.options = options
        self._ssh = require_ssh()
        self._control_dir = tempfile.mkdtemp(prefix="edgecnn-ssh-")
        self._master = False

    # --- the command line ----------------------------------------------------------------------
    def _config_args(self) -> list[str]:
        config = self.device.ssh_config or os.environ.get(ENV_SSH_CONFIG) or None
        return ["-F", str(Path(config).expanduser())] if config else []

    def _args(self, *, master: bool = False) -> list[str]:
        checking = "accept-new" if self.options.accept_new_host_key else "yes"
        args = [self._ssh, *self._config_args(), "-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={checking}",
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", f"ControlPath={self._control_dir}/%C",
                "-o", "ControlMaster=yes" if master else "ControlMaster=no"]
        if master:
            args += ["-o", "ControlPersist=yes"]
        if self.options.identity is not None:
            args += ["-i", str(self.options.identity), "-o", "IdentitiesOnly=yes"]
        if self.device.port is not None:
            args += ["-p", str(self.device.port)]
        return args

    # --- connecting ----------------------------------------------------------------------------
    def connect(self) -> None:
        """Log in once (the master every later command rides on); a refusal is a RemoteError with the fix."""
        with tempfile.TemporaryFile() as errors:
            try:
                # -f: ssh forks once logged in, so this returns; nothing of ours is left on its pipes.
                done = subprocess.run([*self._args(master=True), "-N", "-f", "--", self.device.destination],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                      timeout=CONNECT_TIMEOUT_S * 3)
            except subprocess.TimeoutExpired:
                raise RemoteError(f"ssh {self.device.ssh}: no login after {CONNECT_TIMEOUT_S * 3} s", kind="timeout") from None
            errors.seek(0)
            text = errors.read().decode(errors="replace")
        if done.returncode != 0:
            raise self._login_error(text)
        self._master = True

    def _login_error(self, stderr: str) -> RemoteError:
        target = self.device.ssh
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "ssh failed without a message"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            host, port, known = self.resolved()
            return RemoteError(
                f"{target}: its host key CHANGED since it was recorded in {known}; if the device was reinstalled, "
                f"run `ssh-keygen -R {_known_hosts_name(host, port)} -f {known}` and then {_keyscan(host, port, known)}",
                kind="host_key")
        if "Host key verification failed" in stderr or "host key is known for" in stderr:
            host, port, known = self.resolved()
            return RemoteError(
                f"{target}: unknown host key (not in {known}): check it and run `{_keyscan(host, port, known)}`, "
                "or pass --accept-new-host-key", kind="host_key")
        if "Permission denied" in stderr:
            return RemoteError(f"{target}: login refused ({last}): add your key there with `ssh-copy-id {target}` "
                               "or pass --identity FILE", kind="auth")
        return RemoteError(f"{target}: unreachable ({last})", kind="unreachable")

    def resolved(self) -> tuple[str, int, str]:
        """(hostname, port, first known_hosts file) as OpenSSH resolves this target (`ssh -G`)."""
        args = [self._ssh, *self._config_args()] + (["-p", str(self.device.port)] if self.device.port else [])
        try:
            out = subprocess.run([*args, "-G", "--", self.device.destination], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        values: dict[str, str] = {}
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            values.setdefault(key.lower(), value.strip())
        known = (values.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0]
        return values.get("hostname", self.device.host), int(values.get("port") or 22), known

    # --- running commands ----------------------------------------------------------------------
    def run(self, command: str, *, input: bytes | None = None, timeout: float | None = None,
            what: str = "") -> subprocess.CompletedProcess:
        """Run a shell command on the device; returns the completed process (bytes), whatever its exit status."""
        try:
            return subprocess.run([*self._args(), "--", self.device.destination, command], input=input,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.device.name}: {what or 'command'} timed out after {timeout:.0f} s "
                              "(raise timeout_s in the fleet file)", kind="timeout") from None

    def popen(self, command: str) -> subprocess.Popen:
        """A command with its stdin and stdout as pipes (the lock, the copy)."""
        return subprocess.Popen([*self._args(), "--", self.device.destination, command],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def close(self) -> None:
        if self._master:
            subprocess.run([*self._args(), "-O", "exit", "--", self.device.destination],
                           capture_output=True, timeout=10, check=False)
            self._master = False
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _keyscan(host: str, port: int, known: str) -> str:
    port_flag = "" if port == 22 else f"-p {port} "
    return f"ssh-keyscan {port_flag}{shlex.quote(host)} >> {known}"


def quote(*words: str) -> str:
    """A shell command line from words (the device runs it through its login shell)."""
    return " ".join(shlex.quote(str(w)) for w in words)
