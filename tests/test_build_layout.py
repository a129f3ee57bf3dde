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



def test_the_copied_blas_declarations_match_scipys():
    """src_c/scipy/linalg/cython_blas.pxd copies SciPy's sgemm and dgemm declarations, so that
    the build needs no SciPy (setup.py, E); the core's import would refuse a SciPy whose
    signatures differ, and this says which line drifted."""
    import pathlib

    import scipy.linalg

    copy = pathlib.Path(__file__).parents[1] / "src_c" / "scipy" / "linalg" / "cython_blas.pxd"
    if not copy.exists():
        pytest.skip("no source checkout beside the tests")
    original = pathlib.Path(scipy.linalg.__file__).parent / "cython_blas.pxd"
    if not original.exists():
        pytest.skip("this SciPy ships no cython_blas.pxd")

    def declarations(path):
        return {line.split("(")[0].split()[-1] if line.startswith("cdef") else line: line
                for line in path.read_text().splitlines()
                if line.startswith(("ctypedef ", "cdef void sgemm(", "cdef void dgemm("))}

    copied, scipys = declarations(copy), declarations(original)
    assert copied, "no declarations found in the copy"
    for name, line in copied.items():
        assert scipys.get(name) == line, name
