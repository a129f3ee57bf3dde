"""Small matrix products: fastbp's C loops (src_c/_smallgemm.h) against OpenBLAS.

    python -m fastbp.benchmarks.small_gemm [--dtype float32]

For each (m, k, n) and each form (nn: A·B, nt: A·Bᵀ, tn: Aᵀ·B) it prints the best of 5
timings of many back-to-back calls made from C, through the wrappers training uses
(``mm_*``: the C loops up to ``SMALL_GEMM_MACS`` multiply-adds, BLAS above) and through
BLAS alone (``blas_*``), at one BLAS thread, with the loops on whatever training does here
(fastbp._native.small_products_pay_off decides that from OpenBLAS's kernel family). The first shapes are the products of the
64-32-10 benchmark network at batch 32; the size where the two meet sets SMALL_GEMM_MACS.
"""
import argparse

import numpy as np

from fastbp import _native
from fastbp.benchmarks.threads import blas_info, blas_threads

SHAPES = [(32, 64, 32), (32, 32, 10), (64, 32, 32), (32, 10, 32), (10, 32, 32),
          (64, 64, 64), (64, 128, 64), (128, 64, 128), (128, 128, 128)]


def operands(kind, m, k, n, dtype, rng):
    a_shape = (k, m) if kind == "tn" else (m, k)
    b_shape = (n, k) if kind == "nt" else (k, n)
    return (rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype),
            np.zeros((m, n), dtype))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    core = _native.core
    rng = np.random.default_rng(0)
    print("\n".join(blas_info()))
    in_use = core.small_products()
    print(f"C loops up to {core.SMALL_GEMM_MACS} multiply-adds (training uses them with these "
          f"BLAS kernels: {'yes' if in_use else 'no'}); microseconds per call, C loops / BLAS")
    print("| m x k x n | nn | nt | tn |\n|---|---|---|---|")
    core.small_products(True)  # time the loops even where training leaves them off
    with blas_threads(1):
        for m, k, n in SHAPES:
            cells = []
            for kind in ("nn", "nt", "tn"):
                A, B, C = operands(kind, m, k, n, args.dtype, rng)
                repeats = max(200, int(2e8 / (m * n * k)))
                ours = min(core._bench_mm(kind, A, B, C, repeats) for _ in range(5))
                blas = min(core._bench_mm("blas_" + kind, A, B, C, repeats) for _ in range(5))
                cells.append(f"{1e6 * ours:.2f} / {1e6 * blas:.2f}")
            print(f"| {m}x{k}x{n} | " + " | ".join(cells) + " |")
    core.small_products(in_use)


if __name__ == "__main__":
    main()
