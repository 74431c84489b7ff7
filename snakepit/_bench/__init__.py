"""``snakepit bench`` and the ``bench/`` suite: one catalogue of cases, two runners.

- :mod:`snakepit._bench.cases`: every case, with its setup, the callables of
  snakepit and of its peers, the expected result, its rounds and its target;
- :mod:`snakepit._bench.tasks`: the functions workers run (by name);
- :mod:`snakepit._bench.run`: the installed runner (``snakepit bench``, a
  hand-rolled median of ``time.perf_counter`` rounds);
- :mod:`snakepit._bench.report`: the table, the JSON and the charts of both
  runners (``bench/report.py`` reads pytest-benchmark's JSON with it).

The pytest-benchmark runner is ``bench/`` in the repository. This module
imports nothing: workers import :mod:`snakepit._bench.tasks` through it.
"""
