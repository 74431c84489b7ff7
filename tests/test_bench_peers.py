"""The benchmark catalogue's optional peers and helpers, without starting Ray.

Ray itself is replaced by a stand-in package found first on ``sys.path``: it
records the environment at import and the arguments of ``ray.init``. The
real Ray starts only under ``make bench`` (its session checks loopback).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psutil
import pytest

import snakepit
from bench import conftest as bench_conftest
from bench._harness import skip_reason
from snakepit._bench import _lifecycle, _load, _peers, tasks
from snakepit._bench._model import HEAVY_ENV, BenchError, Case, Env, Impl, Timed, timed_only

_FAKE_RAY = """
import os
from concurrent.futures import Future

ENV_AT_IMPORT = {
    name: os.environ.get(name)
    for name in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
}
calls = []
_up = [False]


def is_initialized():
    return _up[0]


def init(**kwargs):
    calls.append(("init", kwargs))
    _up[0] = True


def shutdown():
    calls.append(("shutdown",))
    _up[0] = False


class _Ref:
    def __init__(self, value):
        self._future = Future()
        self._future.set_result(value)

    def future(self):
        return self._future


def remote(**options):
    calls.append(("remote", options))

    def wrap(fn):
        class Remote:
            def remote(self, *args):
                return _Ref(fn(*args))

        return Remote()

    return wrap


def get(ref):
    return ref.future().result()
"""


@pytest.fixture
def fake_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``import ray`` finds the stand-in; the environment is restored afterwards."""
    package = tmp_path / "ray"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(_FAKE_RAY))
    for name in _peers.RAY_ENV:
        monkeypatch.setenv(name, "1")  # what a user might have: the session overrides it
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    import ray

    assert ray.__file__ == str(package / "__init__.py")
    monkeypatch.delitem(sys.modules, "ray")  # ray_session imports it after setting the env
    yield ray
    sys.modules.pop("ray", None)


def test_ray_starts_on_loopback_with_usage_stats_off(fake_ray: ModuleType) -> None:
    with _peers.ray_session() as session:
        ray: Any = sys.modules["ray"]
        assert session.call(tasks.total, np.ones(3, dtype=np.float32)) == 3.0
        assert session.submit(tasks.noop).result() is None
        assert ray.is_initialized()
    assert ray.ENV_AT_IMPORT == {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    inits = [args for name, *args in ray.calls if name == "init"]
    assert len(inits) == 1
    kwargs = inits[0][0]
    assert kwargs["_node_ip_address"] == "127.0.0.1"
    assert kwargs["num_cpus"] == 2
    assert kwargs["include_dashboard"] is False
    assert ray.calls[-1] == ("shutdown",)
    assert not ray.is_initialized()
    remotes = [args[0] for name, *args in ray.calls if name == "remote"]
    assert remotes
    assert all(options == {"max_retries": 0} for options in remotes)


def test_ray_is_shut_down_when_the_case_fails(fake_ray: ModuleType) -> None:
    with pytest.raises(KeyboardInterrupt), _peers.ray_session():
        raise KeyboardInterrupt
    ray: Any = sys.modules["ray"]
    assert ray.calls[-1] == ("shutdown",)


def test_a_ray_the_bench_did_not_start_is_refused(fake_ray: ModuleType) -> None:
    import ray

    ray.init()
    try:
        with pytest.raises(BenchError, match="already initialised"), _peers.ray_session():
            pass
    finally:
        ray.shutdown()


def test_env_starts_ray_once_and_stops_it_on_close(fake_ray: ModuleType) -> None:
    env = Env()
    try:
        first = _peers.env_ray(env)
        assert _peers.env_ray(env) is first
    finally:
        env.close()
    ray: Any = sys.modules["ray"]
    assert [call[0] for call in ray.calls if call[0] in ("init", "shutdown")] == [
        "init",
        "shutdown",
    ]


@pytest.mark.parametrize(
    "local",
    ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"],
)
def test_loopback_sockets_pass(local: str) -> None:
    _peers.check_loopback([(1, local, "", psutil.CONN_LISTEN), (2, local, local, "ESTABLISHED")])


@pytest.mark.parametrize(
    ("local", "remote"),
    [("0.0.0.0", ""), ("::", ""), ("192.0.2.2", ""), ("127.0.0.1", "192.0.2.7")],
)
def test_sockets_off_loopback_are_refused(local: str, remote: str) -> None:
    with pytest.raises(BenchError, match="off loopback"):
        _peers.check_loopback([(7, local, remote, psutil.CONN_LISTEN)])


def test_this_process_tree_is_on_loopback() -> None:
    _peers.check_loopback()


def test_a_missing_peer_says_what_to_install() -> None:
    impl = Impl("peer", "p", timed_only(Timed(lambda: None)), requires=("snakepit_no_such_peer",))
    assert impl.missing() == "snakepit_no_such_peer is not installed"


def test_heavy_cases_run_only_when_timed_or_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    impl = Impl("snakepit", "s", timed_only(Timed(lambda: None)))
    heavy = Case("big", "big", (impl,), heavy=True)
    light = Case("small", "small", (impl,))
    monkeypatch.delenv(HEAVY_ENV, raising=False)
    assert HEAVY_ENV in str(skip_reason(heavy, impl, timing=False))
    assert skip_reason(heavy, impl, timing=True) is None
    assert skip_reason(light, impl, timing=False) is None
    monkeypatch.setenv(HEAVY_ENV, "1")
    assert skip_reason(heavy, impl, timing=False) is None


def test_the_bench_json_gets_the_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    skips = [{"case": "fresh-arg-1GiB", "impl": "ray", "reason": "ray is not installed"}]
    monkeypatch.setattr(bench_conftest, "SKIPPED", skips)
    output: dict[str, Any] = {"benchmarks": []}
    bench_conftest.pytest_benchmark_update_json(None, [], output)  # type: ignore[arg-type]
    assert json.loads(json.dumps(output))["skipped"] == skips


class _PoolWithPreload:
    def __init__(self, workers: int | None = None, *, preload: list[str] | None = None) -> None:
        raise AssertionError("never started here")


def test_preload_variants_appear_once_pool_accepts_preload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def names() -> list[str]:
        return [case.name for case in _lifecycle.lifecycle_cases()]

    if not _lifecycle.pool_accepts("preload"):
        assert not [name for name in names() if "preload" in name]
    monkeypatch.setattr(snakepit, "Pool", _PoolWithPreload)
    found = names()
    for base in ("startup", "crash-recovery-respawn"):
        assert f"{base}-preload-none" in found
        assert f"{base}-preload-numpy" in found
    variant = next(c for c in _lifecycle.lifecycle_cases() if c.name == "startup-preload-numpy")
    assert "preload=['numpy']" in variant.title
    assert all(target.limit is None for target in variant.targets)  # the goals are the default's
    default = next(c for c in _lifecycle.lifecycle_cases() if c.name == "startup")
    informative = {("startup", "floor"), ("startup", "loky")}
    goals = [target for target in default.targets if target.baseline not in informative]
    assert all(target.limit is not None for target in goals)
    by_peer = {target.baseline: target for target in default.targets}
    assert by_peer["startup", "loky-numpy"].limit is not None  # the goal's own measure
    # The floor: a fresh python importing what the pool preloads.
    floors = {c.name: c.impls[-1].label for c in _lifecycle.lifecycle_cases()}
    assert floors["startup-preload-none"] == "a fresh python importing nothing"
    assert floors["startup-preload-numpy"] == "a fresh python importing numpy"
    assert floors["startup"] == "a fresh python importing numpy"


def test_the_forked_template_start_up_appears_once_pool_accepts_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _lifecycle.pool_accepts("template")
    cases = {case.name: case for case in _lifecycle.lifecycle_cases()}
    variant = cases["startup-template-supervisor"]
    assert "template='supervisor'" in variant.title
    assert all(target.limit is None for target in variant.targets)  # the goals are the default's
    assert "crash-recovery-respawn-template-supervisor" not in cases  # respawns fork either way
    monkeypatch.setattr(snakepit, "Pool", _PoolWithPreload)  # takes preload, not template
    assert "startup-template-supervisor" not in {c.name for c in _lifecycle.lifecycle_cases()}


@pytest.mark.parametrize("modules", [(), ("json", "numpy")])
def test_the_start_up_floor_runs_a_fresh_python(modules: tuple[str, ...]) -> None:
    assert _lifecycle._importing(modules)() is True
    with pytest.raises(subprocess.CalledProcessError):
        _lifecycle._importing(("no_such_module_here",))()


def test_one_busy_process_serves_every_pool_of_a_loaded_case() -> None:
    shared = _load.SharedBusyProcess()
    with shared() as first:
        with shared() as second:
            assert second is first  # the two pools' turns share one
            assert first.poll() is None
        assert first.poll() is None  # the other still runs its turn
    assert first.wait(timeout=5) is not None  # the last one out stopped it
    with shared() as again:
        assert again is not first  # a later case starts its own
    assert again.wait(timeout=5) is not None


def test_pipe_floor_answers_and_its_child_exits() -> None:
    before = {child.pid for child in psutil.Process().children()}
    with _load.pipe_pingpong(Env()) as timed:
        assert timed.call() == b"x"
        assert timed.check is not None
        timed.check(timed.call())
        started = [c for c in psutil.Process().children() if c.pid not in before]
        assert len(started) == 1
    assert not psutil.pid_exists(started[0].pid) or started[0].status() == psutil.STATUS_ZOMBIE


def test_busy_process_spins_and_stops_even_on_an_error() -> None:
    seen: list[Any] = []

    def interrupted() -> None:
        with _load.busy_process() as child:
            seen.append(child)
            assert child.poll() is None
            assert psutil.Process(child.pid).cpu_percent(interval=0.3) > 20
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen[0].returncode is not None


def test_throughput_counts_calls_and_reports_p99() -> None:
    timed = _load._throughput(lambda: None)
    assert timed.call() == _load.THROUGHPUT_CALLS
    assert timed.call() == _load.THROUGHPUT_CALLS
    assert timed.metrics is not None
    assert 0 < timed.metrics()["p99"] < 1.0


def test_throughput_surfaces_a_failing_call() -> None:
    def fail() -> None:
        raise OSError("no worker")

    with pytest.raises(BenchError, match="no worker"):
        _load._throughput(fail).call()


def test_p99_is_the_nearest_rank() -> None:
    assert _load.p99([float(v) for v in range(101)]) == 99.0
    assert _load.p99([5.0]) == 5.0


def test_fork_start_refuses_a_process_with_pool_threads() -> None:
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="snakepit-test-thread")
    thread.start()
    try:
        with pytest.raises(BenchError, match="snakepit-test-thread"):
            _lifecycle._fork_start()
    finally:
        stop.set()
        thread.join()


def test_no_ray_skips_every_ray_peer_with_the_reason() -> None:
    from snakepit._bench import run
    from snakepit._bench.report import BenchReport, Skip

    nothing = timed_only(Timed(lambda: None, rounds=2, warmup=0))
    case = Case(
        "c",
        "c",
        (
            Impl("snakepit", "s", nothing),
            Impl("floor", "f", nothing),
            Impl("ray", "r", nothing, requires=_peers.RAY),
        ),
    )
    report = BenchReport()
    run._run_case(case, Env(), run.BenchOptions(no_ray=True), report)
    assert [m.impl for m in report.cases[0].peers] == ["floor"]
    assert report.skipped in (
        [Skip("c", "ray", "--no-ray")],
        [Skip("c", "ray", "ray is not installed")],
    )
    args = run.argparse.ArgumentParser()
    run.add_arguments(args)
    assert args.parse_args(["--no-ray"]).no_ray is True
    assert args.parse_args([]).no_ray is False
