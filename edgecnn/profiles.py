"""Device profiles: one TOML file per export target in `devices/` (shipped inside the package).

A profile names the runtime, the precisions the device can run, the default precision, threads,
the ONNX opset and input limits. A malformed profile is refused with the field named, because a
silently wrong profile produces an artifact that fails only on the device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRECISIONS = ("fp32", "fp16", "int8")
OPSET_RANGE = (11, 21)
_TOP_LEVEL = {"description", "runtime", "precisions", "default_precision", "threads", "opset", "input",
              "notes", "alias_of", "name", "cpu_vnni", "cpu_arch"}
CPU_ARCHES = ("any", "x86_64", "aarch64")
# What 7-bit weights cost and why they exist, said wherever a profile chooses them.
SEVEN_BIT_NOTE = ("7-bit int8 weights (reduce_range): x86 CPUs without VNNI (AVX2 only) sum pairs of u8*s8 "
                  "products in int16 and saturate with full 8-bit weights; the price is half the weight "
                  "resolution (EfficientNet-Lite1 on ImageNet photos, ONNX Runtime: 95.6 % agreement with "
                  "fp32 at 7 bits vs 97.9 % at 8 bits)")


def _deploy_backends() -> dict:
    """Runtime name -> Backend for every export target runtime (the registry decides, not this module)."""
    from edgecnn.registry import backends

    return {b.name: b for b in backends(deploy_only=True)}


def _backend_tables() -> set[str]:
    """The [table] names backends add to their profiles (e.g. TensorRT's versions)."""
    return {b.profile_table for b in _deploy_backends().values() if b.profile_table}
_INPUT_FIELDS = {"max_size", "max_batch"}


class ProfileError(BadInputError):
    """A device profile is missing, malformed or asks for something it cannot run (exit 2)."""


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile."""

    name: str
    description: str
    runtime: str
    precisions: tuple[str, ...]
    default_precision: str
    threads: int  # 0: the physical cores of the machine that runs the bundle
    opset: int
    max_size: int
    max_batch: int
    path: Path
    notes: str = ""
    alias_of: str | None = None
    settings: dict = field(default_factory=dict)  # the backend's own [table], when it declares one
    # Whether the CPU that runs the artifact has VNNI (AVX512_VNNI / AVX_VNNI): True, False, or None
    # for a CPU the profile does not know (then int8 weights take 7 bits, safe on every x86 CPU).
    cpu_vnni: bool | None = None
    # The CPU architecture of the device ("any": the artifact runs anywhere, e.g. ONNX Runtime's). Where it
    # is not this host's, the host's timing of an int8 candidate says little about the device's (XNNPACK's
    # int8 kernels on an AVX2 x86 are slower than its fp32 ones, on an ARM board with dot-product faster).
    cpu_arch: str = "any"

    def host_timing_decides(self, machine: str | None = None) -> bool:
        """Whether a latency measured on this host may decide for this device (same architecture)."""
        import platform

        here = (machine or platform.machine()).lower()
        here = {"amd64": "x86_64", "arm64": "aarch64"}.get(here, here)
        return self.cpu_arch in ("any", here)

    @property
    def reduce_range(self) -> bool:
        """7-bit int8 weights: unless the profile says the CPU has VNNI (conservative for an unknown CPU)."""
        return self.cpu_vnni is not True

    @property
    def weight_bits_note(self) -> str:
        """Why this profile's int8 weights take 8 or 7 bits."""
        if self.cpu_vnni is True:
            return "8-bit int8 weights: the profile says the CPU has VNNI (int32 accumulation, no saturation)"
        why = "the profile says the CPU lacks VNNI" if self.cpu_vnni is False else "the profile does not know whether the CPU has VNNI"
        return f"{why}: {SEVEN_BIT_NOTE}"

    @property
    def backend(self):
        from edgecnn.registry import get_backend

        return get_backend(self.runtime)

    @property
    def format(self) -> str:
        return self.backend.format

    def to_dict(self) -> dict[str, Any]:
        """What the bundle manifest records (bench reads `threads` from it)."""
        payload = {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "format": self.format,
            "precisions": list(self.precisions),
            "default_precision": self.default_precision,
            "threads": self.threads,
            "opset": self.opset,
            "input": {"max_size": self.max_size, "max_batch": self.max_batch},
            "notes": self.notes,
            "cpu_vnni": "unknown" if self.cpu_vnni is None else self.cpu_vnni,
            "cpu_arch": self.cpu_arch,
        }
        if self.alias_of:
            payload["alias_of"] = self.alias_of
        table = self.backend.profile_table
        if table and self.settings:
            payload[table] = self.settings
        return payload

    def check_precision(self, precision: str) -> str:
        """The precision to build, refusing one the device cannot run (with the reason)."""
        if precision not in PRECISIONS:
            raise ProfileError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        if precision not in self.precisions:
            why = self.settings.get(f"no_{precision}_reason") or self.notes
            raise ProfileError(
                f"target {self.name} does not support {precision} (it supports {', '.join(self.precisions)})"
                + (f": {why}" if why else "")
            )
        return precision


def profiles_dir() -> Path:
    """Where the shipped profiles are: inside the installed package, or the repository's devices/."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "devices", package.parent / "devices"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise ProfileError("no device profiles found: the edgecnn installation lacks its devices/ folder; reinstall it")


def profile_names() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path, *, _seen: tuple[str, ...] = ()) -> DeviceProfile:
    """A shipped profile by target name, or a user's own TOML file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"device profile {path} not found")
    else:
        path = profiles_dir() / f"{text}.toml"
        if not path.is_file():
            import difflib

            names = profile_names()
            close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ProfileError(f"unknown target {text!r}: {hint}targets: {', '.join(names)} (edgecnn devices)")
    try:
        payload = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"device profile {path} is not valid TOML: {exc}") from None
    name = str(payload.get("name") or path.stem)
    alias = payload.get("alias_of")
    if alias is not None:
        if not isinstance(alias, str) or not alias:
            raise ProfileError(f"device profile {path}: field 'alias_of' must be a profile name")
        if alias in _seen or alias == name:
            raise ProfileError(f"device profile {path}: 'alias_of' makes a cycle ({' -> '.join((*_seen, name, alias))})")
        target = load_profile(alias, _seen=(*_seen, name))
        return DeviceProfile(**{**target.__dict__, "name": name, "alias_of": target.name,
                                "description": str(payload.get("description") or target.description)})
    return _validate(payload, path, name)


def _validate(payload: dict, path: Path, name: str) -> DeviceProfile:
    def fail(field_name: str, problem: str) -> ProfileError:
        return ProfileError(f"device profile {path}: field '{field_name}' {problem}")

    known = _TOP_LEVEL | _backend_tables()
    unknown = sorted(set(payload) - known)
    if unknown:
        raise fail(unknown[0], f"is not a profile field (known: {', '.join(sorted(known))})")
    for key in ("description", "runtime", "precisions", "default_precision", "threads", "opset", "input"):
        if key not in payload:
            raise fail(key, "is missing")
    if not isinstance(payload["description"], str):
        raise fail("description", "must be a string")
    runtime = payload["runtime"]
    runtimes = _deploy_backends()
    if runtime not in runtimes:
        raise fail("runtime", f"must be one of {', '.join(runtimes)}, got {runtime!r}")
    precisions = payload["precisions"]
    if not isinstance(precisions, list) or not precisions or any(p not in PRECISIONS for p in precisions):
        raise fail("precisions", f"must be a non-empty list drawn from {', '.join(PRECISIONS)}, got {precisions!r}")
    default = payload["default_precision"]
    if default not in precisions:
        raise fail("default_precision", f"must be one of the profile's precisions {precisions}, got {default!r}")
    threads = payload["threads"]
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise fail("threads", f"must be an integer >= 0 (0 = physical cores), got {threads!r}")
    opset = payload["opset"]
    if not isinstance(opset, int) or isinstance(opset, bool) or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise fail("opset", f"must be an integer in {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, got {opset!r}")
    limits = payload["input"]
    if not isinstance(limits, dict):
        raise fail("input", "must be a table with max_size and max_batch")
    for key in sorted(_INPUT_FIELDS):
        value = limits.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise fail(f"input.{key}", f"must be a positive integer, got {value!r}")
    extra = sorted(set(limits) - _INPUT_FIELDS)
    if extra:
        raise fail(f"input.{extra[0]}", "is not an input limit (known: max_size, max_batch)")
    settings = _backend_settings(payload, runtimes[runtime], fail)
    notes = payload.get("notes", "")
    if not isinstance(notes, str):
        raise fail("notes", "must be a string")
    vnni = payload.get("cpu_vnni", "unknown")
    if vnni not in (True, False, "unknown"):
        raise fail("cpu_vnni", f"must be true, false or \"unknown\" (whether the target CPU has VNNI), got {vnni!r}")
    arch = payload.get("cpu_arch", "any")
    if arch not in CPU_ARCHES:
        raise fail("cpu_arch", f"must be one of {', '.join(CPU_ARCHES)} (the device's CPU), got {arch!r}")
    return DeviceProfile(
        name=name, description=payload["description"], runtime=runtime, precisions=tuple(precisions),
        default_precision=default, threads=threads, opset=opset, max_size=limits["max_size"],
        max_batch=limits["max_batch"], path=path, notes=notes, settings=settings,
        cpu_vnni=None if vnni == "unknown" else vnni, cpu_arch=arch,
    )


def _backend_settings(payload: dict, backend, fail) -> dict:
    """The backend's own table; another backend's table in this profile is refused."""
    for other in _backend_tables() - {backend.profile_table}:
        if other in payload:
            raise fail(other, f"belongs to another runtime's profiles, not {backend.name}")
    if not backend.profile_table:
        return {}
    table = payload.get(backend.profile_table, {})
    if not isinstance(table, dict):
        raise fail(backend.profile_table, "must be a table")
    if backend.profile_table_required and not table:
        raise fail(backend.profile_table, f"is missing ({backend.label} profiles state the versions they target)")
    return dict(table)


def list_profiles() -> list[DeviceProfile]:
    """Every shipped profile (a malformed one raises: the package must not ship one)."""
    return [load_profile(name) for name in profile_names()]
