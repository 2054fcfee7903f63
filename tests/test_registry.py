"""The registry: each runtime's folder declares its Backend in backend.toml; every declared module exists."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from edgecnn.errors import RegistryError
from edgecnn.registry import Backend, _declared_in, backends, declared

# The Backend fields that name code as "module:attribute" (or a module, for tuning).
_REFERENCES = ("runner", "build", "int8", "finish", "file_quantizer", "device_build", "sensitivity")


@pytest.mark.parametrize("backend", backends(), ids=lambda b: b.name)
def test_every_declared_step_resolves(backend):
    """What a backend declares is importable and is what it says (no module found by cutting strings)."""
    for field in _REFERENCES:
        reference = getattr(backend, field)
        if reference is None:
            continue
        module, _, attribute = reference.partition(":")
        assert attribute, f"{backend.name}.{field} = {reference!r} names no attribute"
        assert callable(getattr(importlib.import_module(module), attribute)), f"{backend.name}.{field}"
    if backend.tuning is not None:  # what edgecnn tune reads of a tuning module
        module = backend.tuning_module()
        assert callable(module.axes) and callable(module.compute_precision)
    if backend.int8 is not None:
        from edgecnn.quantize import Int8Method

        method = backend.int8_method()
        assert isinstance(method, Int8Method) and method.artifact and method.fp32_artifact and method.runtime
    assert declared(backend.package) is backend


def test_a_declaration_with_an_unknown_field_is_refused(tmp_path):
    path = tmp_path / "backend.toml"
    path.write_text('name = "x"\nlabel = "X"\nformat = "x"\nsuffixes = [".x"]\nrunner = "m:R"\n'
                    'device_extra = "x"\nquantizer = "m:q"\n')
    with pytest.raises(RegistryError, match="'quantizer' is not a Backend field"):
        _declared_in("edgecnn.backends.x", path)


def test_a_declaration_missing_a_field_is_refused(tmp_path):
    path = tmp_path / "backend.toml"
    path.write_text('name = "x"\nlabel = "X"\n')
    with pytest.raises(RegistryError, match="backend.toml"):
        _declared_in("edgecnn.backends.x", path)


def test_lists_become_tuples(tmp_path):
    path = tmp_path / "backend.toml"
    path.write_text('name = "x"\nlabel = "X"\nformat = "x"\nsuffixes = [".x"]\nrunner = "m:R"\ndevice_extra = "x"\n'
                    'precisions = ["fp32", "int8"]\n')
    backend = _declared_in("edgecnn.backends.x", path)
    assert backend.precisions == ("fp32", "int8") and backend.package == "edgecnn.backends.x"
    assert {f.name for f in dataclasses.fields(Backend)} >= set(_REFERENCES)
