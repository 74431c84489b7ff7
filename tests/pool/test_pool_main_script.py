"""Functions defined in a user's __main__ script run in workers (sent by value)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_functions_from_a_main_script(tmp_path: Path) -> None:
    helper = tmp_path / "helpers_mod.py"
    helper.write_text("def triple(x):\n    return 3 * x\n")
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            import snakepit
            from helpers_mod import triple

            def square(x):
                return x * x

            class Box:
                def __init__(self, value):
                    self.value = value

            def unbox(box):
                return box.value

            if __name__ == "__main__":
                with snakepit.Pool(workers=1) as pool:
                    print(pool.call(square, 7))
                    print(pool.call(triple, 5))
                    print(pool.call(unbox, Box(11)))
                    print(list(pool.map(square, [1, 2, 3])))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["49", "15", "11", "[1, 4, 9]"]
