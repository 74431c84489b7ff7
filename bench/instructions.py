"""Instructions per pool call, counted by valgrind: a meter that load does not move.

On a shared 2-core VM wall time swings severalfold within minutes, so a
change of a few percent to the call path cannot be seen in seconds. This
runs a loop of calls under ``valgrind --tool=callgrind`` twice (``--small``
and ``--large`` calls after a warm-up) and prints the difference divided by
the extra calls: instructions per call of the caller's main thread and of
the busiest worker. Repeats agree within about 1%. It needs valgrind;
under it a run takes a minute or two. Not a timed benchmark: compare two
commits with it (run it in each checkout), not against peers.

    python bench/instructions.py [--call noop|shared-1k] [--small 200] [--large 1200]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

_LOOP = """
import sys
import snakepit
from snakepit._bench import tasks
calls, kind = int(sys.argv[1]), sys.argv[2]
with snakepit.Pool(workers=2, preload=[], spin_seconds=0.0) as pool:
    array = snakepit.zeros(256, dtype="float32")
    fn, args = (tasks.noop, ()) if kind == "noop" else (tasks.first_element, (array,))
    for _ in range(100 + calls):
        pool.call(fn, *args)
    del array
"""


def _totals(directory: str) -> dict[str, int]:
    """Instructions per callgrind output file (one per process and thread)."""
    totals = {}
    for path in glob.glob(os.path.join(directory, "cg.*")):
        with open(path, encoding="utf-8", errors="replace") as file:
            for line in file:
                match = re.match(r"(?:summary|totals): (\d+)", line)
                if match:
                    totals[os.path.basename(path)] = int(match.group(1))
                    break
    return totals


def _run(calls: int, kind: str, script: str, directory: str) -> tuple[int, int]:
    """(caller's main thread, busiest worker) instructions of one run."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--separate-threads=yes",
        f"--callgrind-out-file={directory}/cg.%p",
        sys.executable,
        script,
        str(calls),
        kind,
    ]
    subprocess.run(command, check=True, capture_output=True)
    totals = _totals(directory)
    # The supervisor is the lowest pid; its thread 1 is the caller.
    pids = sorted({int(name.split(".")[1].split("-")[0]) for name in totals})
    caller = totals[f"cg.{pids[0]}-01"]
    workers = [
        sum(v for k, v in totals.items() if k.startswith(f"cg.{pid}")) for pid in pids[2:]
    ]  # pids[1] is the template
    return caller, max(workers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--call", choices=["noop", "shared-1k"], default="noop")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1200)
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    kind = "noop" if options.call == "noop" else "shared"
    with tempfile.TemporaryDirectory() as work:
        script = os.path.join(work, "loop.py")
        with open(script, "w", encoding="utf-8") as file:
            file.write(_LOOP)
        runs = []
        for calls in (options.small, options.large):
            directory = os.path.join(work, str(calls))
            os.mkdir(directory)
            runs.append(_run(calls, kind, script, directory))
    extra = options.large - options.small
    (caller_a, worker_a), (caller_b, worker_b) = runs
    print(f"{options.call}: instructions per call")
    print(f"  caller's main thread  {(caller_b - caller_a) / extra:,.0f}")
    print(f"  busiest worker        {(worker_b - worker_a) / extra:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
