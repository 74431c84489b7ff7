"""A real kernel OOM kill of a worker: the call fails as "killed", nothing hangs.

The supervisor runs in a child process placed in a fresh memory cgroup with a
small limit; its worker allocates past the limit and the kernel's OOM killer
SIGKILLs it. Needs a writable memory cgroup (root on Linux).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

LIMIT_BYTES = 400 << 20

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import snakepit
    from snakepit.errors import WorkerCrashedError

    def hog():
        # Make this worker, not the supervisor, the OOM killer's choice.
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
        return float(np.ones(1 << 28).sum())  # 2 GiB, far past the limit

    if __name__ == "__main__":
        with snakepit.Pool(workers=1) as pool:
            try:
                pool.options(timeout=120).call(hog)
                print("no crash")
            except WorkerCrashedError as exc:
                print(exc.exit_kind, exc.signal)
                print(exc.message)
            print(pool.call("operator:add", 20, 22))
    """
)


def _memory_cgroup() -> Path | None:
    """A fresh memory cgroup limited to LIMIT_BYTES, v1 or v2; None if unavailable."""
    name = f"snakepit-oom-{secrets.token_hex(4)}"
    v1 = Path("/sys/fs/cgroup/memory")
    v2 = Path("/sys/fs/cgroup")
    try:
        if (v1 / "memory.limit_in_bytes").exists():
            group = v1 / name
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(str(LIMIT_BYTES))
            return group
        if "memory" in (v2 / "cgroup.controllers").read_text().split():
            group = v2 / name
            group.mkdir()
            (group / "memory.max").write_text(str(LIMIT_BYTES))
            return group
    except OSError:
        return None
    return None


@pytest.fixture
def cgroup() -> Iterator[Path]:
    group = _memory_cgroup()
    if group is None:
        pytest.skip("no writable memory cgroup here (needs root and a memory controller)")
    try:
        yield group
    finally:
        group.rmdir()


def test_kernel_oom_kill_fails_only_that_call(cgroup: Path, tmp_path: Path) -> None:
    script = tmp_path / "oom_job.py"
    script.write_text(SCRIPT)
    procs = cgroup / "cgroup.procs"
    result = subprocess.run(
        ["sh", "-c", f'echo $$ > {procs} && exec "$0" "$1"', sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "killed 9"
    assert "out-of-memory killer" in lines[1] or "OOM" in lines[1]
    assert lines[-1] == "42"
