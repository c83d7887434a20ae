"""The one compiled part: the MinHash signature kernel (stages/dedup/_minhash_c.c). Optional: where no C compiler
is at hand the install goes on and the stage uses its numba kernel (same signatures, slower)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("stages.dedup._minhash_c", ["stages/dedup/_minhash_c.c"],
                             extra_compile_args=["-O3", "-std=c11"], optional=True)])
