"""OpenBLAS in the template: pinned to one thread there, the user's count in its workers."""

from __future__ import annotations

import pytest

import snakepit
from snakepit.worker import _blas
from tests.pool import _zygote_tasks

np = pytest.importorskip("numpy")


def _pinnable() -> bool:
    return _blas.template_env({}).get("OPENBLAS_NUM_THREADS") == "1"


def test_template_env_pins_only_when_the_user_names_no_thread_count() -> None:
    if not _pinnable():
        pytest.skip("numpy's BLAS here is not an OpenBLAS with the globals the pin restores")
    pinned = _blas.template_env({"PATH": "/bin"})
    assert pinned == {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "1", _blas.PIN_ENV: "1"}
    for name in _blas.THREAD_VARS:
        assert _blas.template_env({name: "3"}) == {name: "3"}


@pytest.mark.parametrize("env", [{}, {"OMP_NUM_THREADS": "1"}, {"OPENBLAS_NUM_THREADS": "2"}])
def test_forked_workers_have_the_thread_count_of_a_fresh_interpreter(
    env: dict[str, str],
) -> None:
    if not _pinnable():
        pytest.skip("numpy's BLAS here is not an OpenBLAS with the globals the pin restores")
    import os

    worker_env = {**os.environ, **env}
    for name in _blas.THREAD_VARS:
        if name not in env:
            worker_env.pop(name, None)
    with snakepit.Pool(workers=1, env=worker_env, preload=None) as fresh:
        expected = fresh.call(_zygote_tasks.blas_state)
    with snakepit.Pool(workers=2, env=worker_env) as pool:
        assert pool.worker_pids()
        got = {pool.call(_zygote_tasks.blas_state) for _ in range(4)}
    assert got == {expected}
    assert expected[1] == env.get("OPENBLAS_NUM_THREADS")
    assert expected[2] is None


def test_the_template_finds_openblas_once_and_workers_only_write_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not _pinnable():
        pytest.skip("numpy's BLAS here is not an OpenBLAS with the globals the pin restores")
    monkeypatch.setattr(_blas, "_PINNED", True)
    monkeypatch.setattr(_blas, "_found", None)
    _blas.find_in_template()
    found = _blas._found
    assert found is not None
    cpu_number, num_threads, max_threads = found
    before = (cpu_number.value, num_threads.value)

    def no_lookup() -> None:
        raise AssertionError("a worker looked OpenBLAS up again")

    monkeypatch.setattr(_blas, "_find", no_lookup)
    wanted = 1 if before != (1, 1) else 2  # a count it does not have yet
    if wanted > max_threads:
        pytest.skip("this OpenBLAS runs one thread at most")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", str(wanted))
    try:
        _blas.restore_in_worker()
        assert (cpu_number.value, num_threads.value) == (wanted, wanted)
    finally:
        cpu_number.value, num_threads.value = before
