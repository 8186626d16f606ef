"""The compiled core, chaingrad._core: the one thing pyproject.toml cannot declare by itself.

It is optional: where no C compiler is found (or the build fails), installation goes on and chaingrad
runs its reference engine, in pure Python, warning once that it is the slow path.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """Compiler flags for results bit for bit the reference engine's: no fused multiply-add, no fast-math."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "msvc":
            args = ["/O2", "/fp:precise"]
        else:
            # -fvisibility=hidden: the core's C files call each other's functions (ADD, cg_div, ...) directly,
            # and the module exports only PyInit__core
            args = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c99", "-Wall", "-fvisibility=hidden"]
        link = []
        if os.environ.get("CHAINGRAD_SANITIZE") == "1" and self.compiler.compiler_type != "msvc":
            # CI's AddressSanitizer/UBSan build (.ci/sanitize): no free list, so that every freed node is
            # freed; built into a folder of its own, never in place (see .ci/sanitize)
            sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
            args = ["-O1", "-g", "-fno-omit-frame-pointer", *sanitize, "-DKEEP_FREED=0", *args[1:]]
            link = sanitize
        for ext in self.extensions:
            ext.extra_compile_args = args + ext.extra_compile_args
            ext.extra_link_args = link + ext.extra_link_args
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:
            # optional: installation goes on without it; this says how to get it, where pip shows output
            print(
                "chaingrad: its compiled core (chaingrad._core) did not build, so chaingrad will run its "
                "reference engine in pure Python, much slower on single numbers. To get the core, install a "
                "C compiler and the Python headers (on Debian or Ubuntu: apt-get install gcc python3-dev), "
                'then install chaingrad again (pip install -e ".[demo]" from a checkout).',
                file=sys.stderr,
            )
            raise


# The core's C: the CPython binding (_core.c), its support for the cyclic garbage collector (_collector.c),
# the numeric kernels it calls (_kernels.c, pure C) and cg.compile's tapes replayed with them (_tape.c)
SOURCES = [
    "src/chaingrad/_core.c",
    "src/chaingrad/_collector.c",
    "src/chaingrad/_kernels.c",
    "src/chaingrad/_tape.c",
]
HEADERS = [
    "src/chaingrad/_collector.h",
    "src/chaingrad/_kernels.h",
    "src/chaingrad/_value.h",
    "src/chaingrad/_tape.h",
]

setup(
    ext_modules=[Extension("chaingrad._core", SOURCES, depends=HEADERS, optional=True)],
    cmdclass={"build_ext": BuildExt},
)
