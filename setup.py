"""Build the Cython extension over the C core (metadata lives in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


class BuildExtWithHeader(build_ext):
    """Also ship the public C header so C users can find it via get_include()."""

    def run(self) -> None:
        include_dir = ROOT / "snakepit" / "include"
        include_dir.mkdir(exist_ok=True)
        shutil.copy2(CSRC / "snakepit_core.h", include_dir / "snakepit_core.h")
        super().run()


extensions = [
    Extension(
        "snakepit._core._core",
        sources=["snakepit/_core/_core.pyx", *C_SOURCES],
        include_dirs=[str(CSRC)],
        define_macros=[("_GNU_SOURCE", "1")],
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
    cmdclass={"build_ext": BuildExtWithHeader},
)
