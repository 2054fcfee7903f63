"""The dependency metadata: a device install (core + one runtime extra) never pulls torch."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from edgecnn.backends import backends

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Every backend's device extra (from the registry), and tflite-runtime, the older runtime of the same files.
RUNTIME_EXTRAS = sorted({b.device_extra for b in backends(deploy_only=True)} | {"tflite-runtime"})
TORCH_PACKAGES = {"torch", "torchvision", "timm", "litert-torch", "nncf"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower()


def resolve_extra(extra: str, seen: frozenset = frozenset()) -> set[str]:
    """Package names an extra brings, following self-references like edgecnn[torch]."""
    names: set[str] = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        match = re.match(r"edgecnn\[([^\]]+)\]", requirement)
        if match:
            for inner in match.group(1).split(","):
                if inner not in seen:
                    names |= resolve_extra(inner.strip(), seen | {extra})
        else:
            names.add(_name(requirement))
    return names


def test_core_dependencies_are_small_and_torch_free():
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert core <= {"numpy", "typer", "rich", "tomli"}
    assert not core & TORCH_PACKAGES


@pytest.mark.parametrize("extra", RUNTIME_EXTRAS)
def test_runtime_extras_pull_no_torch(extra):
    names = resolve_extra(extra)
    assert names, extra
    assert not names & TORCH_PACKAGES, (extra, names & TORCH_PACKAGES)


def test_every_backend_names_extras_that_exist():
    declared = set(PROJECT["optional-dependencies"])
    for backend in backends():
        assert backend.device_extra in declared, (backend.name, backend.device_extra)
        assert backend.host_extra in declared, (backend.name, backend.host_extra)


def test_all_brings_the_whole_host_toolchain_with_torch_below_2_15():
    names = resolve_extra("all")
    assert names >= {"torch", "torchvision", "scikit-learn", "onnx", "onnxslim", "onnxruntime",
                     "openvino", "nncf", "litert-torch", "ai-edge-litert"}
    torch_pins = [r for r in PROJECT["optional-dependencies"]["torch"] if _name(r) == "torch"]
    assert torch_pins and "<2.15" in torch_pins[0]


def test_installed_metadata_matches_pyproject():
    """The installed distribution (what pip resolves from) declares the same torch-free core."""
    from importlib.metadata import requires

    declared = requires("edgecnn") or []
    core = [r for r in declared if "extra ==" not in r]
    assert not {_name(r) for r in core} & TORCH_PACKAGES
    for extra in RUNTIME_EXTRAS:
        marker = f'extra == "{extra}"'
        in_extra = {_name(r) for r in declared if marker in r}
        assert not in_extra & TORCH_PACKAGES, extra


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, edgecnn.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_wheel_ships_the_devices_folder(tmp_path):
    """devices/ lives at the top of the repository and must land inside the installed package."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), "-q"],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("edgecnn-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("edgecnn/devices/")}
    expected = {f"edgecnn/devices/{p.name}" for p in (ROOT / "devices").iterdir() if p.is_file()}
    assert expected and expected <= shipped
