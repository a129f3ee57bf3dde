"""Build the one compiled extension, fastbp._core, from src_c/."""
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# Portable speed: -O3 vectorises the elementwise loops; no -march=native so wheels run anywhere.
if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math"]

extension = Extension(
    "fastbp._core",
    sources=["src_c/_core.pyx"],
    include_dirs=[np.get_include(), "src_c"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
)

setup(
    ext_modules=cythonize(
        [extension],
        include_path=["src_c"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
