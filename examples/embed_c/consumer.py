"""Build and run producer.c, then modify its tensor from Python without a copy.

Usage: python examples/embed_c/consumer.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import snakepit


def build(workdir: Path) -> Path:
    """Compile producer.c against the installed core; returns the executable."""
    compiler = os.environ.get("CC") or shutil.which("cc") or "gcc"
    library = Path(snakepit.get_library())
    executable = workdir / "producer"
    subprocess.run(
        [
            compiler,
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            str(Path(__file__).with_name("producer.c")),
            f"-I{snakepit.get_include()}",
            str(library),
            f"-Wl,-rpath,{library.parent}",
            "-o",
            str(executable),
        ],
        check=True,
    )
    return executable


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        executable = build(Path(tmp))
        with subprocess.Popen(
            [str(executable)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdin is not None
            assert proc.stdout is not None
            descriptor = json.loads(proc.stdout.readline())
            ref = snakepit.TensorRef(
                id="from-c",
                shape=tuple(descriptor["shape"]),
                dtype=descriptor["dtype"],
                strides=(4,),
                offset=descriptor["offset"],
                region=descriptor["region"],
                nbytes=descriptor["nbytes"],
                region_size=descriptor["region_size"],
            )
            view = snakepit.from_ref(ref)
            print(f"python sees data[:4]={view[:4].tolist()} sum={float(view.sum())}")
            view[:] = 1.0
            view[0] = 42.0
            del view  # drops our reference on the block before C frees it
            proc.stdin.write("done\n")
            proc.stdin.flush()
            print(proc.stdout.read().strip())
            return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
