"""Start-up of ``Pool(template="supervisor")``, timed in a process fit to fork.

A pool forks its supervisor only while nothing but the calling thread runs
(see docs/crash-recovery.md, "A template forked from the supervisor"). A
benchmark run's own process is rarely that by the time this case comes:
torch's and Arrow's thread pools, once started, stay for good. So the case
runs its pools in a helper: a fresh interpreter that has imported numpy
and snakepit, as an application has when it makes its first pool, and
starts one pool per round when told to over a pipe. The round trip over
the pipe (tens of microseconds) is timed with it.

``python -m snakepit._bench._fork_startup`` is the helper; it answers one
line per command: ``start`` (a pool of ``WORKERS``, its first call
returned: ``started``, or ``failed <why>``), ``close`` (``closed``), and
exits on ``quit`` or at the end of its input.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from snakepit._bench._model import BenchError, Env, Prepare, Timed, expect

__all__ = ["forked_startup", "main"]

#: Seconds the helper may take to start, and to answer one command.
_HELPER_TIMEOUT = 60.0


def main() -> int:
    """The helper's loop (see the module docstring)."""
    import signal

    import numpy  # noqa: F401  # as the application has

    # Ctrl-C reaches the whole process group: the parent ends this helper
    # (quit, or the end of its input), after it has closed its pools.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    import snakepit
    from snakepit._bench import tasks

    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    pool: snakepit.Pool | None = None
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "start":
            answer = "started"
            try:
                pool = snakepit.Pool(workers=workers, template="supervisor")
                pool.call(tasks.noop)
                zygote = pool._supervisor._zygote
                if zygote is None or not zygote.forked_from_supervisor:
                    threads = [t.name for t in threading.enumerate()]
                    answer = f"failed the template is no fork of this process ({threads})"
            except Exception as exc:
                answer = f"failed {type(exc).__name__}: {exc}"
            print(answer, flush=True)
        elif command == "close":
            if pool is not None:
                pool.shutdown(wait=True)
                pool = None
            print("closed", flush=True)
        elif command == "quit":
            break
    if pool is not None:
        pool.shutdown(wait=True)
    return 0


class _Helper:
    """The parent's side: one helper process and its pipes."""

    def __init__(self, workers: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "snakepit._bench._fork_startup", str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.ask(None, "ready")

    def ask(self, command: str | None, expected: str) -> str:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None
        assert stdout is not None
        if command is not None:
            stdin.write(command + "\n")
            stdin.flush()
        # One line answers each command, so nothing waits in the buffer here.
        ready, _, _ = select.select([stdout], [], [], _HELPER_TIMEOUT)
        if not ready:
            self.proc.kill()
            raise BenchError(f"the start-up helper did not answer in {_HELPER_TIMEOUT:.0f} s")
        answer = stdout.readline().strip()
        if not answer:
            raise BenchError(f"the start-up helper exited (status {self.proc.poll()})")
        if answer != expected:
            raise BenchError(f"start-up helper: {answer}")
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=_HELPER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def forked_startup(workers: int, rounds: int = 10, quick: int = 3) -> Prepare:
    """Time ``Pool(workers, template="supervisor")`` and its first call, in the helper."""

    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        helper = _Helper(workers)
        try:

            def start() -> Any:
                return helper.ask("start", "started")

            def close() -> None:  # returns nothing: pytest-benchmark takes a result as arguments
                helper.ask("close", "closed")

            yield Timed(
                start,
                rounds=rounds,
                quick_rounds=quick,
                warmup=1,
                setup=close,
                check=lambda result: expect(result, "started", "a pool forked from the helper"),
            )
        finally:
            helper.close()

    return prepare


if __name__ == "__main__":
    sys.exit(main())
