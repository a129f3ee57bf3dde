# The same core as _core.pyx, compiled with AVX-512 (see setup.py). fastbp/_native.py imports
# it on CPUs that have it; the elementwise loops and the small products then run 16 floats
# wide. Measured on one epoch of the 64-32-10 benchmark network against the AVX2 build:
# 23% faster with OpenBLAS held to AVX2 kernels (the small products, in these loops), 6%
# with OpenBLAS's AVX-512 kernels (the elementwise work); the larger networks, whose
# elementwise passes wait on memory, unchanged.
include "_core.pyx"
