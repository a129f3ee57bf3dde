"""The compiled core for this CPU.

``fastbp._core_avx2`` is the same Cython source as ``fastbp._core`` compiled with AVX2 + FMA
(built on x86-64 only). It is used when the CPU has both, as NumPy's CPU-feature table
reports; otherwise the portable baseline build is. Set ``FASTBP_CORE=baseline`` (or ``avx2``)
before importing fastbp to force one.
"""
import importlib
import os

_MODULES = {"avx2": "fastbp._core_avx2", "baseline": "fastbp._core"}
_NEEDS = {"avx2": ("AVX2", "FMA3"), "baseline": ()}


def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return __cpu_features__


def available():
    """Names of the core builds that are installed and can run on this CPU, fastest first."""
    features = _cpu_features()
    names = []
    for name, module in _MODULES.items():
        if all(features.get(flag, False) for flag in _NEEDS[name]):
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            names.append(name)
    return names


def load(name):
    """The core module called ``name`` (see :func:`available`)."""
    if name not in available():
        raise ImportError(f"fastbp core {name!r} is not available here; available: {available()}")
    return importlib.import_module(_MODULES[name])


def _default():
    names = available()
    if not names:
        raise ModuleNotFoundError("no compiled fastbp core is importable", name="fastbp._core")
    return names[0]


VARIANT = os.environ.get("FASTBP_CORE") or _default()
core = load(VARIANT)
