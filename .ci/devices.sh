#!/usr/bin/env bash
# CI devices for the `--on`/`--fleet` tests: a real sshd on 127.0.0.1 and two devices behind it.
#
#   x86-device  127.0.0.1:22022  a venv with only edgecnn[onnxruntime,litert,openvino-runtime] (no torch)
#   arm-device  127.0.0.1:22023  a Debian bookworm arm64 root run under qemu-user (trixie's static
#                                qemu-aarch64 10.x through binfmt_misc), its own aarch64 Python and a
#                                venv with only edgecnn[litert]; `uname -m` over ssh says aarch64
#
# Runs as root on a fresh Debian machine. Slow parts are cached under $EDGECNN_CI_CACHE
# (default /var/cache/edgecnn-ci): the arm64 root (~5 min to debootstrap), the qemu binary, the wheels
# and both device venvs; a second run only reinstalls this checkout's edgecnn wheel and restarts sshd.
# Keys, sshd and the ssh config live in $EDGECNN_CI_DEVICES (default /tmp/edgecnn-ci-devices), which
# the tests read (tests/remote_devices.py): ssh_config, fleet.toml, setup.json.
#
# Nothing listens anywhere but 127.0.0.1. A part that cannot be set up here (no binfmt_misc, no
# network for debootstrap) is written to setup.json as the reason, so its tests skip saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
CACHE="${EDGECNN_CI_CACHE:-/var/cache/edgecnn-ci}"
STATE="${EDGECNN_CI_DEVICES:-/tmp/edgecnn-ci-devices}"
X86_PORT=22022
ARM_PORT=22023
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PY=python3.11
ROOT="$CACHE/arm64-root"
X86_VENV="$CACHE/x86-venv"
QEMU="$CACHE/qemu/usr/bin/qemu-aarch64"
mkdir -p "$CACHE" "$STATE"
rm -f "$STATE/setup.json"  # written again at the end, once everything answered
log() { printf 'devices: %s\n' "$*" >&2; }
t0=$SECONDS

if [ "$(id -u)" != 0 ]; then
  log "not root: no devices set up (the ssh tests skip)"
  printf '{"ssh": null, "ssh_skip": "run .ci/devices.sh as root", "arm": null, "arm_skip": "run .ci/devices.sh as root"}\n' >"$STATE/setup.json"
  exit 0
fi

# --- packages: OpenSSH server, debootstrap ---------------------------------------------------------
need=()
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- this checkout's edgecnn as a wheel (both devices install it) -----------------------------------
rm -rf "$STATE/wheel"
python -m pip wheel -q --no-deps --no-build-isolation -w "$STATE/wheel" "$REPO"
WHEEL="$(ls "$STATE"/wheel/edgecnn-*.whl)"

# --- the x86 device: a venv without torch (built in the background while the ARM device is set up) ---
setup_x86() {
  if [ ! -x "$X86_VENV/bin/edgecnn" ]; then
    log "x86 device venv: edgecnn[onnxruntime,litert,openvino-runtime]"
    rm -rf "$X86_VENV"
    "$PY" -m venv "$X86_VENV"
    "$X86_VENV/bin/pip" install -q "$WHEEL[onnxruntime,litert,openvino-runtime]" || { rm -rf "$X86_VENV"; exit 1; }
  elif ! "$X86_VENV/bin/python" -c 'import openvino' 2>/dev/null; then  # a cache from before the x86 target ran there
    log "x86 device venv: adding OpenVINO"
    "$X86_VENV/bin/pip" install -q "$WHEEL[openvino-runtime]" || { rm -rf "$X86_VENV"; exit 1; }
  fi
  "$X86_VENV/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"
  if "$X86_VENV/bin/python" -c 'import torch' 2>/dev/null; then
    log "error: torch importable in the x86 device venv"; exit 1
  fi
}
setup_x86 >"$STATE/x86-setup.log" 2>&1 &
x86_pid=$!

# --- the ARM device: qemu-user from trixie, binfmt_misc, a debootstrapped arm64 root -----------------
arm_skip=""
setup_qemu() {
  [ -x "$QEMU" ] && return 0
  log "qemu-user from Debian trixie (bookworm's 7.2 segfaults in ai-edge-litert)"
  local apt="$CACHE/apt-trixie"
  mkdir -p "$apt/lists/partial" "$apt/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o APT::Get::List-Cleanup=0)
  # (set -e does not reach inside a function called from `if`: each step says its own failure)
  apt-get "${opts[@]}" update -qq || { arm_skip="apt-get update of Debian trixie failed"; return 1; }
  (cd "$apt" && rm -f qemu-user_*.deb && apt-get "${opts[@]}" download qemu-user >/dev/null 2>&1) \
    || { arm_skip="apt-get download qemu-user (trixie) failed"; return 1; }
  rm -rf "$CACHE/qemu.tmp" && dpkg-deb -x "$apt"/qemu-user_*.deb "$CACHE/qemu.tmp" || { arm_skip="dpkg-deb -x qemu-user failed"; return 1; }
  rm -rf "$CACHE/qemu" && mv "$CACHE/qemu.tmp" "$CACHE/qemu"
}
setup_binfmt() {
  local fs=/proc/sys/fs/binfmt_misc entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if [ ! -e "$fs/register" ]; then
    mount -t binfmt_misc binfmt_misc "$fs" 2>/dev/null || { arm_skip="binfmt_misc cannot be mounted here (needs a privileged, non-container root)"; return 1; }
  fi
  if [ -e "$entry" ] && ! grep -qx "interpreter $QEMU" "$entry"; then
    echo -1 >"$entry"  # another qemu (e.g. bookworm's 7.2) would take the aarch64 binaries
  fi
  if [ ! -e "$entry" ]; then
    # F: the kernel opens the interpreter now, so it runs inside the chroot without a copy there.
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$QEMU"':F' >"$fs/register"
  fi
}
setup_root() {
  if [ ! -x "$ROOT/usr/bin/python3" ]; then
    log "debootstrap arm64 $SUITE (about 5 minutes, cached in $ROOT)"
    rm -rf "$ROOT.tmp"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOT.tmp" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 \
      || { arm_skip="debootstrap arm64 failed (see $STATE/debootstrap.log)"; return 1; }
    mv "$ROOT.tmp" "$ROOT"
  fi
  # The root gets a /dev of its own (a tmpfs with the few nodes Python and ssh sessions need), never a
  # bind of the host's: a file renamed over /dev/null in there must not replace the machine's /dev/null.
  if [ "$(findmnt -n -o FSTYPE "$ROOT/dev" 2>/dev/null)" != tmpfs ] && mountpoint -q "$ROOT/dev"; then
    umount -l "$ROOT/dev"  # an older setup's bind of the host's /dev
  fi
  for fs in proc sys dev; do
    mountpoint -q "$ROOT/$fs" && continue
    case $fs in
      proc) mount -t proc proc "$ROOT/proc" ;;
      sys) mount -t sysfs sysfs "$ROOT/sys" ;;
      dev) mount -t tmpfs -o mode=755,size=16m arm-dev "$ROOT/dev"
           for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
             set -- $node; mknod -m 666 "$ROOT/dev/$1" c "$2" "$3"
           done
           mkdir -p "$ROOT/dev/shm" "$ROOT/dev/pts"
           ln -s /proc/self/fd "$ROOT/dev/fd"; ln -s fd/0 "$ROOT/dev/stdin"; ln -s fd/1 "$ROOT/dev/stdout"
           ln -s fd/2 "$ROOT/dev/stderr" ;;
    esac
  done
}
setup_arm_venv() {
  local wheels="$CACHE/wheels-aarch64"
  if [ ! -x "$ROOT/opt/edgecnn/bin/edgecnn" ]; then
    log "aarch64 wheels from PyPI and the arm device venv: edgecnn[litert]"
    mkdir -p "$wheels"
    python -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
      --platform manylinux2014_aarch64 --platform linux_aarch64 -d "$wheels" "$WHEEL[litert]" \
      || { arm_skip="pip download of the aarch64 wheels failed"; return 1; }
    rm -rf "$ROOT/var/cache/wheels" && cp -r "$wheels" "$ROOT/var/cache/wheels"
    chroot "$ROOT" /usr/bin/python3 -m venv /opt/edgecnn || { arm_skip="python3 -m venv in the arm64 root failed"; return 1; }
    chroot "$ROOT" /opt/edgecnn/bin/pip install -q --no-index --find-links /var/cache/wheels "/var/cache/wheels/$(basename "$WHEEL")[litert]" \
      || { rm -rf "$ROOT/opt/edgecnn"; arm_skip="pip install edgecnn[litert] in the arm64 root failed"; return 1; }
  fi
  cp "$WHEEL" "$ROOT/tmp/"
  chroot "$ROOT" /opt/edgecnn/bin/pip install -q --no-index --no-deps --force-reinstall "/tmp/$(basename "$WHEEL")" \
    || { arm_skip="pip install of this checkout's wheel in the arm64 root failed"; return 1; }
  rm -f "$ROOT/tmp/$(basename "$WHEEL")"
  [ "$(chroot "$ROOT" /usr/bin/uname -m)" = aarch64 ] || { arm_skip="the arm64 root does not report aarch64"; return 1; }
}
if setup_qemu && setup_binfmt && setup_root && setup_arm_venv; then
  log "arm device ready ($(chroot "$ROOT" /usr/bin/python3 --version), $(basename "$QEMU") $("$QEMU" --version | head -1 | awk '{print $3}'))"
else
  arm_skip="${arm_skip:-arm device setup failed}"
  log "no arm device: $arm_skip"
fi

if ! wait "$x86_pid"; then
  grep -v '^WARNING: Location' "$STATE/x86-setup.log" >&2 || true
  log "error: the x86 device venv could not be set up (above)"; exit 1
fi
grep -v '^WARNING: Location' "$STATE/x86-setup.log" >&2 || true

# --- sshd on 127.0.0.1 with keys generated here ------------------------------------------------------
# One CI sshd per machine: stop the last one, whichever folder it was started from (its ports are ours).
for pidfile in "$STATE/sshd.pid" "$(cat "$CACHE/sshd.pidfile" 2>/dev/null)"; do
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then kill "$(cat "$pidfile")"; sleep 0.5; fi
done
rm -f "$STATE/setup.json"
echo "$STATE/sshd.pid" >"$CACHE/sshd.pidfile"
rm -f "$STATE"/host_key* "$STATE"/id_ed25519* "$STATE/known_hosts"
ssh-keygen -q -t ed25519 -N '' -C edgecnn-ci-host -f "$STATE/host_key"
ssh-keygen -q -t ed25519 -N '' -C edgecnn-ci-user -f "$STATE/id_ed25519"
cp "$STATE/id_ed25519.pub" "$STATE/authorized_keys"
mkdir -p "$STATE/x86-home" /run/sshd
cat >"$STATE/enter-x86" <<EOF
#!/bin/sh
# The x86 device: a login whose PATH is the torch-free venv.
export HOME="$STATE/x86-home" PATH="$X86_VENV/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8
cd "\$HOME" || exit 1
exec /bin/sh -c "\${SSH_ORIGINAL_COMMAND:-exec /bin/sh -i}"
EOF
cat >"$STATE/enter-arm64" <<EOF
#!/bin/sh
# The ARM device: every session runs inside the arm64 root (aarch64 binaries through qemu-user).
exec chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/edgecnn/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \\
  /bin/sh -c 'cd /root && eval "\$1"' sh "\${SSH_ORIGINAL_COMMAND:-exec /bin/sh -i}"
EOF
chmod 755 "$STATE/enter-x86" "$STATE/enter-arm64"
cat >"$STATE/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $X86_PORT
Port $ARM_PORT
HostKey $STATE/host_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
StrictModes no
UsePAM no
MaxStartups 64:30:128
MaxSessions 64
Match LocalPort $X86_PORT
  ForceCommand $STATE/enter-x86
Match LocalPort $ARM_PORT
  ForceCommand $STATE/enter-arm64
EOF
if [ ! -c /dev/null ]; then
  # sshd daemonizes onto /dev/null ("daemon() failed: No such device" otherwise); a rename over it as root
  # (an older edgecnn writing --json /dev/null) leaves a plain file there.
  log "warning: /dev/null is not a character device (replaced by a plain file?): restoring it"
  rm -f /dev/null && mknod -m 666 /dev/null c 1 3
fi
/usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log"
for _ in $(seq 50); do ssh-keyscan -p "$X86_PORT" 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
{ ssh-keyscan -t ed25519 -p "$X86_PORT" 127.0.0.1; ssh-keyscan -t ed25519 -p "$ARM_PORT" 127.0.0.1; } >"$STATE/known_hosts" 2>/dev/null
host_block() {
  printf 'Host %s\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n\n' \
    "$1" "$2" "$STATE/id_ed25519" "$3"
}
{ host_block x86-device "$X86_PORT" "$STATE/known_hosts"; host_block arm-device "$ARM_PORT" "$STATE/known_hosts"; } >"$STATE/ssh_config"
# The same devices with an empty known_hosts: what a user sees before trusting a new device.
: >"$STATE/known_hosts.empty"
{ host_block x86-device "$X86_PORT" "$STATE/known_hosts.empty"; host_block arm-device "$ARM_PORT" "$STATE/known_hosts.empty"; } >"$STATE/ssh_config.unknown"
cat >"$STATE/fleet.toml" <<EOF
# The CI fleet (written by .ci/devices.sh).
ssh_config = "$STATE/ssh_config"

[devices.x86-device]
ssh = "x86-device"
profile = "x86"
command = "edgecnn"

[devices.arm-device]
ssh = "arm-device"
profile = "arm"
command = "/opt/edgecnn/bin/edgecnn"
timeout_s = 900
EOF
ssh -F "$STATE/ssh_config" x86-device 'uname -m' >/dev/null
arm_json=null
if [ -z "$arm_skip" ]; then
  if [ "$(ssh -F "$STATE/ssh_config" arm-device 'uname -m')" = aarch64 ]; then arm_json='"arm-device"'; else arm_skip="ssh arm-device: uname -m is not aarch64"; fi
fi
skip_json=null; [ -n "$arm_skip" ] && skip_json="\"$arm_skip\""
printf '{"ssh": "x86-device", "ssh_skip": null, "arm": %s, "arm_skip": %s, "ssh_config": "%s", "fleet": "%s", "wheel": "%s"}\n' \
  "$arm_json" "$skip_json" "$STATE/ssh_config" "$STATE/fleet.toml" "$WHEEL" >"$STATE/setup.json"
log "ready in $((SECONDS - t0)) s: $STATE/setup.json"
