"""Build the Cython extension over the C core (metadata lives in pyproject.toml).

The C core (``csrc/sp_*.c``) is compiled once, with the flags of
``csrc/flags.mk`` (the set ``csrc/Makefile`` unit-tests it with, ``-Werror``
included), and the same objects are linked into the extension and into
``lib/libsnakepit_core.so``. The Cython-generated ``_core.c`` gets the same
standard and warnings without ``-Werror``, ``-Wshadow`` and
``-Wstrict-prototypes``: Cython's own macros shadow locals and numpy's headers
declare functions without prototypes, and a warning that a newer Cython, numpy
or compiler adds to code we do not write must not break a user's build.

A few pure-Python modules that every call runs through (the flat codec, the
compact frames, the packed descriptors: ``snakepit/_compiled.py`` lists
them) are also compiled by Cython as they are, with annotations not taken as
C types, so they behave as their source does; the ``.py`` stays the source
of truth, and the import system prefers the compiled module beside it.
Under ``SNAKEPIT_PURE_PYTHON=1`` they are not compiled and the source runs.

Knobs (environment): ``SNAKEPIT_DEBUG=1`` (-O0), ``SNAKEPIT_SANITIZE=1``
(ASan + UBSan), ``SNAKEPIT_COVERAGE=1`` (gcov), as in ``csrc/flags.mk``;
``SNAKEPIT_PURE_PYTHON=1`` (see above).
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"
C_SOURCES = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("sp_*.c"))
C_HEADERS = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.h"))
FLAGS_FILE = CSRC / "flags.mk"
#: Warnings of csrc/flags.mk that the generated _core.c is spared (see the docstring).
NOT_FOR_GENERATED = {"-Werror", "-Wshadow", "-Wstrict-prototypes"}


def read_flags(path: Path) -> dict[str, list[str]]:
    """The ``NAME := words`` assignments of a makefile fragment (comments dropped)."""
    flags: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Z_]+)\s*:=\s*(.*?)\s*", line.split("#", 1)[0])
        if match:
            flags[match.group(1)] = match.group(2).split()
    return flags


def _knob(name: str) -> bool:
    return os.environ.get(name) == "1"


FLAGS = read_flags(FLAGS_FILE)
optimise = FLAGS["SP_OPT_DEBUG"] if _knob("SNAKEPIT_DEBUG") else FLAGS["SP_OPT"]
instrument: list[str] = []
link_args = [flag for flag in FLAGS["SP_LIBS"] if not flag.startswith("-l")]
if _knob("SNAKEPIT_SANITIZE"):
    instrument += FLAGS["SP_SANITIZE"]
    link_args += FLAGS["SP_SANITIZE"]
if _knob("SNAKEPIT_COVERAGE"):
    instrument += FLAGS["SP_COVERAGE"]
    link_args += ["--coverage"]
libraries = [flag[2:] for flag in FLAGS["SP_LIBS"] if flag.startswith("-l")]
core_args = [*FLAGS["SP_STD"], *optimise, *FLAGS["SP_WARN"], *FLAGS["SP_CODEGEN"], *instrument]
generated_args = [
    *FLAGS["SP_STD"],
    *optimise,
    *(flag for flag in FLAGS["SP_WARN"] if flag not in NOT_FOR_GENERATED),
    "-g",
    *instrument,
]


class BuildExtWithCLibrary(build_ext):
    """Compile the C core once, link it into the extension, and also ship it as a
    plain shared library plus its public header, so C programs can embed it
    (snakepit.get_include() / get_library())."""

    def run(self) -> None:
        package_dir = ROOT / "snakepit" if self.inplace else Path(self.build_lib) / "snakepit"
        include_dir = package_dir / "include"
        include_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CSRC / "snakepit_core.h", include_dir / "snakepit_core.h")
        self.core_objects: list[str] = []
        super().run()  # calls build_extensions(), which compiles the core
        self.compiler.link_shared_lib(
            self.core_objects,
            "snakepit_core",
            output_dir=str(package_dir / "lib"),
            libraries=libraries,
            extra_postargs=link_args,
        )

    def build_extensions(self) -> None:
        self.core_objects = self.compiler.compile(
            C_SOURCES,
            output_dir=self.build_temp,
            include_dirs=[str(CSRC)],
            extra_postargs=core_args,
            depends=[*C_HEADERS, str(FLAGS_FILE)],
        )
        for ext in self.extensions:
            if ext.name == CORE:
                ext.extra_objects = list(self.core_objects)
        super().build_extensions()


CORE = "snakepit._core._core"
#: Pure-Python modules compiled as they are (see snakepit/_compiled.py).
COMPILED_MODULES = runpy.run_path(str(ROOT / "snakepit" / "_compiled.py"))["COMPILED_MODULES"]

core = Extension(
    CORE,
    sources=["snakepit/_core/_core.pyx"],
    depends=[*C_SOURCES, *C_HEADERS, str(FLAGS_FILE.relative_to(ROOT))],
    include_dirs=[str(CSRC), numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=generated_args,
    extra_link_args=link_args,
    libraries=libraries,
)
extensions = cythonize(
    [core],
    compiler_directives={"language_level": "3", "embedsignature": True},
    include_path=[str(ROOT)],
)
if not _knob("SNAKEPIT_PURE_PYTHON"):
    compiled = [
        Extension(
            name,
            sources=[name.replace(".", "/") + ".py"],
            extra_compile_args=generated_args,
            extra_link_args=link_args,
        )
        for name in COMPILED_MODULES
    ]
    extensions += cythonize(
        compiled,
        # The source's semantics: annotations are documentation, not C types.
        compiler_directives={"language_level": "3", "annotation_typing": False, "binding": True},
        build_dir="build/cython",
        quiet=True,
    )

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExtWithCLibrary})
