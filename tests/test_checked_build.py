"""The installed core is the build FASTBP_DEBUG_CYTHON asks for (see setup.py).

CI builds the package twice: normally, and once with FASTBP_DEBUG_CYTHON=1, where every
memoryview index is bounds-checked so an out-of-range index raises IndexError instead of
corrupting memory, and runs the whole suite against each with the variable set as it was for
the build. This test makes sure the suite really ran against the build it meant to: a checked
run against an unchecked core (say, a stale extension reused) would prove nothing, and an
unchecked build must not carry the checks' cost.
"""
import os

import numpy as np
import pytest

from fastbp import _native

CHECKED = os.environ.get("FASTBP_DEBUG_CYTHON", "").strip() not in ("", "0")


@pytest.mark.parametrize("name", _native.available())
def test_installed_core_is_the_build_FASTBP_DEBUG_CYTHON_asks_for(name):
    core = _native.load(name)
    # The probe: &x[0] of an empty array. Unchecked, it only takes the address and the
    # kernel reads nothing (0 values); checked, the index itself is out of range.
    empty = np.zeros(0, dtype=np.float64)
    if CHECKED:
        try:
            core._twin_max_magnitude(empty)
        except IndexError as error:
            assert "Out of bounds" in str(error)
        else:
            pytest.fail(f"FASTBP_DEBUG_CYTHON is set, but the installed core {name!r} "
                        f"({core.__file__}) has no bounds checks: rebuild it with the "
                        "variable set")
    else:
        try:
            result = core._twin_max_magnitude(empty)
        except IndexError:
            pytest.fail(f"the installed core {name!r} ({core.__file__}) is a checked build "
                        "(FASTBP_DEBUG_CYTHON=1), but FASTBP_DEBUG_CYTHON is not set: "
                        "set it for the tests, or reinstall without it")
        assert result == 0.0
