"""What this machine is: physical cores (and, as runtimes need them, CPU model and flags)."""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads counted once), at least 1."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = list(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            cores = set()
            break
        cores.add((package, core))
    if cores:
        return len(cores)
    return max(1, len(allowed))


def load_average() -> float | None:
    """This machine's 1-minute load average (None where the OS does not say): recorded beside timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def int8_accumulates_exactly() -> bool:
    """Whether this CPU's int8 dot products accumulate in int32 without saturating, whatever the weights.

    x86 without VNNI (AVX2 only) sums pairs of u8*s8 products in int16 (vpmaddubsw), which saturates with
    full 8-bit weights; VNNI (avx512_vnni, avx_vnni) accumulates in int32. Other architectures' int8 dot
    products (ARM sdot/udot) accumulate in int32 too.
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # not known: take the saturating case, the safe one
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_vnni" in flags or "avx_vnni" in flags


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
