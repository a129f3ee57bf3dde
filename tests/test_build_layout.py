"""The installed compiled modules are laid out as setup.py builds them.

Cython's utility code (memoryviews, fused functions) is compiled once, into
``fastbp._cyutility``, and every core build imports it from there (setup.py, C): a core built
without it would still work, but would cost the build a quarter more C per core, so a
change that silently dropped it (e.g. a new Cython option) must show here.
"""
import importlib
import sys

import pytest

from fastbp import _native


def test_the_shared_utility_module_is_installed_beside_the_cores():
    utility = importlib.import_module("fastbp._cyutility")
    assert utility.__name__ == "fastbp._cyutility"


@pytest.mark.parametrize("name", _native.available())
def test_each_core_is_its_own_module_and_imports_the_shared_utility_module(name):
    core = _native.load(name)
    assert core.__name__ == _native._MODULES[name]
    assert "fastbp._cyutility" in sys.modules
    # The core's import of the utility module is the one Cython generates for --shared.
    with open(core.__file__, "rb") as library:
        assert b"fastbp._cyutility" in library.read()

