"""Build the Cython extension over the C core (metadata lives in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
C_SOURCES = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("sp_*.c"))

DEBUG = os.environ.get("SNAKEPIT_DEBUG") == "1"
compile_args = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-function"]
compile_args += ["-O0", "-g"] if DEBUG else ["-O2"]
link_args: list[str] = []
if os.environ.get("SNAKEPIT_SANITIZE") == "1":
    compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    link_args += ["-fsanitize=address,undefined"]


class BuildExtWithCLibrary(build_ext):
    """Also ship the C core as a plain shared library plus its public header,
    so C programs can embed it (snakepit.get_include() / get_library())."""

    def run(self) -> None:
        package_dir = ROOT / "snakepit" if self.inplace else Path(self.build_lib) / "snakepit"
        include_dir = package_dir / "include"
        include_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CSRC / "snakepit_core.h", include_dir / "snakepit_core.h")
        super().run()
        objects = self.compiler.compile(
            C_SOURCES,
            output_dir=self.build_temp,
            macros=[("_GNU_SOURCE", "1")],
            include_dirs=[str(CSRC)],
            extra_postargs=[*compile_args, "-fPIC", "-fvisibility=hidden"],
        )
        self.compiler.link_shared_lib(
            objects,
            "snakepit_core",
            output_dir=str(package_dir / "lib"),
            libraries=["rt"],
            extra_postargs=["-pthread", *link_args],
        )


extensions = [
    Extension(
        "snakepit._core._core",
        sources=["snakepit/_core/_core.pyx", *C_SOURCES],
        include_dirs=[str(CSRC), numpy.get_include()],
        define_macros=[("_GNU_SOURCE", "1"), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        libraries=["rt"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=[str(ROOT)],
    ),
    cmdclass={"build_ext": BuildExtWithCLibrary},
)
