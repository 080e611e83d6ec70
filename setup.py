"""Build the Cython core: every bpfload/_core/*.pyx is one extension module.

The C helpers in csrc/ are header-only and included by the .pyx files.
Set BPFLOAD_DEBUG=1 to compile the debug invariants (bounds assertions that
are free in a release build) and keep debug info; a release build is -O2,
without debug info, and its extensions are stripped.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("BPFLOAD_DEBUG") == "1"

extensions = [
    Extension(
        "bpfload._core." + os.path.splitext(os.path.basename(path))[0],
        [os.path.relpath(path, HERE)],
        include_dirs=["csrc"],
        extra_compile_args=["-O2", "-g" if DEBUG else "-g0", "-Wno-unused-function"],
        extra_link_args=[] if DEBUG else ["-s"],
        define_macros=[("BPFLOAD_DEBUG", "1" if DEBUG else "0")],
    )
    for path in sorted(glob.glob(os.path.join(HERE, "bpfload", "_core", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        compile_time_env={},
    ),
)
