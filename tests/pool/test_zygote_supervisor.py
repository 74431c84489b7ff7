"""``Pool(template="supervisor")``: the template is a fork of the supervisor.

Workers then start as copies of the supervisor as it was when the pool
started (its modules and their globals), without what must not cross into
them: its descriptors, exit hooks, log handlers and environment. The checks
that need a process with no other thread (forking is refused otherwise) run
in a fresh interpreter. A SIGKILL of the supervisor is in test_zygote.py,
for both kinds of template.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import snakepit
from tests.pool import _tasks

_ROOT = str(Path(__file__).resolve().parents[2])

_SCRIPT = """
import atexit, json, logging, os, sys, time, weakref
import psutil
import snakepit
from snakepit.errors import WorkerCrashedError
from tests.pool import _fork_tasks, _tasks

out, marks = sys.argv[1], sys.argv[2]
logging.basicConfig(filename=os.path.join(out, "supervisor.log"), level=logging.WARNING)
held = open(os.path.join(out, "held-open"), "w")
atexit.register(lambda: open(os.path.join(marks, str(os.getpid())), "w").close())
class Kept:
    pass
kept = Kept()
weakref.finalize(kept, lambda: open(os.path.join(marks, f"finalized-{os.getpid()}"), "w").close())
_fork_tasks.MARK = 41
from snakepit import telemetry
from snakepit.telemetry import _bus
seen = os.path.join(out, "events")
def note(event, measurements, metadata, config):
    with open(seen, "a") as file:
        file.write(f"{os.getpid()}\\n")
telemetry.attach("test-fork", ("tests", "fork"), note)
_bus.start_deferred()  # snakepit's own thread, idle: forking goes on
os.environ["SNAKEPIT_ONLY_HERE"] = "1"
env = {k: v for k, v in os.environ.items() if k != "SNAKEPIT_ONLY_HERE"}
env["SNAKEPIT_TEST"] = "pool"
real_stdout = sys.stdout
sys.stdout = open(os.path.join(out, "captured"), "w")  # as a capture replaces it
started = time.perf_counter()
pool = snakepit.Pool(workers=2, template="supervisor", env=env)
first = pool.call(_tasks.add, 1, 2)
seconds = time.perf_counter() - started
zygote = pool._supervisor._zygote
report = {
    "first": first,
    "forked": zygote.forked_from_supervisor,
    "supervisor": os.getpid(),
    "template": zygote.pid,
    "template_parent": psutil.Process(zygote.pid).ppid(),
    "worker_parents": sorted({pool.call(_fork_tasks.parent_pid) for _ in range(4)}),
    "mark": pool.call(_fork_tasks.mark),
    "open": pool.call(_fork_tasks.open_paths),
    "env_pool": pool.call(_fork_tasks.environment, "SNAKEPIT_TEST"),
    "env_only_here": pool.call(_fork_tasks.environment, "SNAKEPIT_ONLY_HERE"),
    "logged_by": pool.call(_fork_tasks.log_warning, "from-a-worker"),
    "handlers": pool.call(_fork_tasks.root_handlers),
    "emitted_in": pool.call(_fork_tasks.emit, ("tests", "fork")),
    "said_in": pool.call(_fork_tasks.say, "hello-from-a-worker"),
    "seconds": seconds,
}
try:
    pool.call(_tasks.segfault)
except WorkerCrashedError as exc:
    report["crash"] = str(exc.exit_kind)
report["after_crash"] = pool.call(_tasks.add, 2, 2)
report["parents_after_crash"] = sorted({pool.call(_fork_tasks.parent_pid) for _ in range(4)})
finalizing = [pool.submit(_fork_tasks.keep_a_finalized_object, 0.2) for _ in range(2)]
report["finalizers_in"] = sorted(f.result() for f in finalizing)
workers = pool.worker_pids()
pool.shutdown(wait=True)
_bus.flush_deferred()
report["events_noted_in"] = open(seen).read().split()
deadline = time.monotonic() + 10
while any(map(psutil.pid_exists, workers)) and time.monotonic() < deadline:
    time.sleep(0.01)
report["workers_left"] = [pid for pid in workers if psutil.pid_exists(pid)]
report["marks_after_shutdown"] = os.listdir(marks)
held.close()
sys.stdout.close()
sys.stdout = real_stdout
print(json.dumps(report), flush=True)
"""


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=_ROOT,
    )


def test_workers_start_as_copies_of_the_supervisor_without_its_descriptors(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    done = _run(_SCRIPT, str(tmp_path), str(marks))
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert report["first"] == 3
    assert report["forked"] is True, done.stderr
    assert report["template_parent"] == report["supervisor"]
    assert report["worker_parents"] == [report["template"]]
    # Its modules' globals as they were when the pool started.
    assert report["mark"] == 41
    # Not its files, nor its environment: the pool's.
    assert str(tmp_path / "held-open") not in report["open"]
    assert not [p for p in report["open"] if p.endswith("supervisor.log")]
    assert report["env_pool"] == "pool"
    assert report["env_only_here"] is None
    # A crash is classified, and the next worker is forked from the same copy.
    assert report["crash"] == "segfault"
    assert report["after_crash"] == 4
    assert report["parents_after_crash"] == [report["template"]]
    # The supervisor's exit hook and finalizer ran in no worker (nor in the
    # template), though workers made finalizers of their own.
    assert len(set(report["finalizers_in"])) == 2  # both workers made one
    assert report["workers_left"] == []
    assert report["marks_after_shutdown"] == []
    # The worker's record reached the supervisor's log once, through
    # forwarding: the copy's handler (its file closed) is gone.
    assert "FileHandler" not in report["handlers"]
    # The worker's event reached the supervisor's handler, by forwarding
    # alone: no copy of the handler ran in the worker.
    assert report["emitted_in"] != report["supervisor"]
    assert report["events_noted_in"] == [str(report["supervisor"])]
    # What a worker prints goes to descriptor 1, labelled, as from a fresh
    # worker: not through the supervisor's replacement of sys.stdout.
    said = f"(worker 0 pid {report['said_in']}) hello-from-a-worker"
    said_other = f"(worker 1 pid {report['said_in']}) hello-from-a-worker"
    assert said in done.stdout or said_other in done.stdout, done.stdout
    assert "hello-from-a-worker" not in (tmp_path / "captured").read_text()
    log = (tmp_path / "supervisor.log").read_text()
    assert log.count("from-a-worker") == 1, log


def test_a_pool_made_while_another_thread_runs_uses_a_fresh_template(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="test-other")
    other.start()
    try:
        with (
            caplog.at_level(logging.WARNING, logger="snakepit.pool._zygote"),
            snakepit.Pool(workers=1, template="supervisor") as pool,
        ):
            assert pool.call(_tasks.add, 1, 2) == 3
            zygote = pool._supervisor._zygote
            assert zygote is not None
            assert not zygote.forked_from_supervisor
            assert zygote.pid is not None
            assert "zygote" in psutil.Process(zygote.pid).cmdline()
    finally:
        stop.set()
        other.join()
    assert "not a fork of this process" in caplog.text
    assert "Python threads run here" in caplog.text


def test_a_fork_that_fails_to_become_a_template_leaves_a_fresh_one() -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        import snakepit
        from snakepit.worker import _zygote

        def broken(*args):
            raise RuntimeError("no template today")

        _zygote.run_forked = broken
        logging.basicConfig(stream=sys.stdout, level=logging.WARNING)
        with snakepit.Pool(workers=2, template="supervisor") as pool:
            assert pool.call(int, "7") == 7
            zygote = pool._supervisor._zygote
            assert not zygote.forked_from_supervisor
            assert zygote.pid is not None
            print("template", zygote.pid, *{pool.call(__import__("os").getppid) for _ in range(4)})
        """
    )
    done = _run(script)
    assert done.returncode == 0, done.stderr
    assert "did not become a template" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("template"))
    template, *parents = line.split()[1:]
    assert parents == [template]


def test_an_async_pool_with_an_initializer_and_recycling_forks_every_start(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import asyncio, json, os, sys
        import snakepit

        def note_start(path):
            with open(path, "a") as file:
                file.write(f"{os.getpid()}\\n")

        async def main(path):
            async with snakepit.Pool(
                workers=2,
                template="supervisor",
                initializer=note_start,
                initargs=(path,),
                max_tasks_per_child=2,
            ) as pool:
                zygote = pool._supervisor._zygote
                pids = [await pool.acall(os.getpid) for _ in range(6)]
                parents = {await pool.acall(os.getppid) for _ in range(4)}
                return {
                    "forked": zygote.forked_from_supervisor,
                    "template": zygote.pid,
                    "pids": pids,
                    "parents": sorted(parents),
                }

        print(json.dumps(asyncio.run(main(sys.argv[1]))))
        """
    )
    starts = tmp_path / "starts"
    done = _run(script, str(starts))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["forked"] is True
    assert report["parents"] == [report["template"]]
    # Each worker answers two calls, then a new one is forked and initialised.
    assert len(set(report["pids"])) >= 3
    started = starts.read_text().split()
    assert set(report["pids"]) <= {int(pid) for pid in started}
    assert len(started) == len(set(started))  # once per worker start


def test_a_killed_forked_template_is_replaced_by_a_fresh_one() -> None:
    script = textwrap.dedent(
        """
        import json, os, signal, time
        import snakepit
        pool = snakepit.Pool(workers=2, template="supervisor")
        pool.call(int)
        zygote = pool._supervisor._zygote
        first, old = zygote.pid, set(pool.worker_pids())
        assert zygote.forked_from_supervisor
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = set(pool.worker_pids())
            if len(pids) == 2 and not pids & old and zygote.pid not in (None, first):
                break
            time.sleep(0.05)
        parents = {pool.call(os.getppid) for _ in range(4)}
        print(json.dumps({
            "first": first,
            "second": zygote.pid,
            "forked": zygote.forked_from_supervisor,
            "parents": sorted(parents),
            "crashes": pool.stats()["crashes"],
        }))
        pool.shutdown()
        """
    )
    done = _run(script)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["second"] not in (None, report["first"])
    assert report["forked"] is False  # the one made later is a fresh interpreter
    assert report["parents"] == [report["second"]]
    assert report["crashes"] == 2  # its workers died with it


def test_shutdown_reaps_the_forked_template() -> None:
    script = textwrap.dedent(
        """
        import os, snakepit
        pool = snakepit.Pool(workers=1, template="supervisor")
        pool.call(int)
        template = pool._supervisor._zygote.pid
        assert pool._supervisor._zygote.forked_from_supervisor
        pool.shutdown()
        try:
            os.waitpid(template, os.WNOHANG)
        except ChildProcessError:
            print("reaped")
        """
    )
    done = _run(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "reaped"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"template": "fork"}, "template takes"),
        ({"template": "supervisor", "preload": None}, "preload=None"),
        ({"template": "supervisor", "memory_limit_per_worker": "1GiB"}, "memory_limit"),
    ],
)
def test_bad_template_options_are_refused(kwargs: dict[str, Any], match: str) -> None:
    before = set(psutil.Process().children())
    with pytest.raises(ValueError, match=match):
        snakepit.Pool(workers=1, **kwargs)
    time.sleep(0.05)
    assert set(psutil.Process().children()) == before
