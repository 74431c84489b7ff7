"""The paced-call case of the benchmark catalogue (``snakepit/_bench/_paced.py``)."""

from __future__ import annotations

import time

from snakepit._bench import _paced, cases


def test_the_load_suite_times_paced_calls_against_no_spinning_and_ppe() -> None:
    (paced,) = [case for case in cases.SUITES["load"] if case.name == "paced"]
    assert [impl.impl for impl in paced.impls] == ["snakepit", "no-spin", "ppe"]
    limits = {t.baseline: t.limit for t in cases.TARGETS if t.subject == ("paced", "snakepit")}
    assert limits[("paced", "no-spin")] == 1.0  # polling never worse than sleeping
    assert limits[("paced", "ppe")] is None


def test_the_callers_pause_is_work_of_its_own_length() -> None:
    started = time.perf_counter()
    _paced._pause()
    assert time.perf_counter() - started >= _paced.PAUSE_SECONDS
