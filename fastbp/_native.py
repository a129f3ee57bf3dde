"""The compiled core for this CPU.

``fastbp._core_avx512`` and ``fastbp._core_avx2`` are the same Cython source as
``fastbp._core`` compiled with AVX-512 and with AVX2 + FMA (built on x86-64 only). The
widest one the CPU runs, as NumPy's CPU-feature table reports (it includes the operating
system's support), is used; otherwise the portable baseline build is. Set
``FASTBP_CORE=baseline`` (or ``avx2``, ``avx512``) before importing fastbp to force one.

The loaded core runs small products in its own C loops only where that was measured to
win (:func:`small_products_pay_off`).
"""
import importlib
import os

_MODULES = {"avx512": "fastbp._core_avx512", "avx2": "fastbp._core_avx2",
            "baseline": "fastbp._core"}
_NEEDS = {"avx512": ("AVX512F", "AVX512CD", "AVX512VL", "AVX512BW", "AVX512DQ", "AVX2", "FMA3"),
          "avx2": ("AVX2", "FMA3"), "baseline": ()}

#: Builds with C loops for small products (_smallgemm.h) worth using.
SMALL_PRODUCT_BUILDS = ("avx2", "avx512")
#: OpenBLAS kernel families whose small products those loops beat: 1.5-2x on the 64-32-10
#: network's products with Haswell kernels, while OpenBLAS's own small-matrix paths of its
#: SkylakeX (AVX-512) kernels ran them about 2x faster than the AVX2 loops, and a training
#: epoch 1.4x slower with the AVX-512 loops than without them (python -m
#: fastbp.benchmarks.small_gemm, with and without OPENBLAS_CORETYPE=Haswell).
SMALL_PRODUCTS_BEAT = ("Haswell", "Zen")


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


def small_products_pay_off(variant):
    """Whether core ``variant``'s C loops beat SciPy's BLAS on small products: only the
    SMALL_PRODUCT_BUILDS against OpenBLAS kernels of the families in SMALL_PRODUCTS_BEAT
    (unmeasured pairings keep BLAS)."""
    if variant not in SMALL_PRODUCT_BUILDS:
        return False
    try:
        from .threads import _scipy_blas
        families = {getattr(lib, "architecture", None) for lib in _scipy_blas()}
    except ImportError:  # no threadpoolctl: the kernels cannot be told
        return False
    return bool(families) and families <= set(SMALL_PRODUCTS_BEAT)


VARIANT = os.environ.get("FASTBP_CORE") or _default()
core = load(VARIANT)
core.small_products(small_products_pay_off(VARIANT))
