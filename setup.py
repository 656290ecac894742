"""Build the compiled core, fastsock._core, from Cython and the C helpers in csrc/."""
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

core = Extension(
    "fastsock._core",
    sources=["fastsock/_core.pyx", *sorted(glob("csrc/*.c"))],
    include_dirs=["csrc"],
    depends=sorted(glob("csrc/*.h")),
)

setup(
    ext_modules=cythonize(
        [core],
        language_level=3,
        compiler_directives={
            "binding": True,
            "embedsignature": True,
            "freethreading_compatible": True,
            # No module-level __test__ dict: the module's names are exactly the
            # ones _core.pyi declares (mypy.stubtest checks this).
            "autotestdict": False,
        },
    ),
)
