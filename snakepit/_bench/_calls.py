"""The catalogue's other pool-call cases: inline payloads, torch and Arrow.

Part of :mod:`snakepit._bench.cases` (which lists them in ``SUITES``); torch
and pyarrow are imported only when a case runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

import snakepit
from snakepit._bench import tasks
from snakepit._bench._model import (
    MARK,
    MIB,
    BenchError,
    Case,
    Env,
    Impl,
    Prepare,
    Timed,
    expect,
    size_label,
    vs,
)

# ------------------------------------------------------------------- inline


def inline_case(kind: str, nbytes: int) -> Case:
    """A payload that travels in the frame, not through shared memory; 1 worker each.

    ``kind``: ``bytes-arg`` (a ``bytes`` argument; the worker returns its
    length), ``bytes-result`` (the worker returns that many bytes) or
    ``arrays-arg`` (64 float32 arrays of ``nbytes / 64``, each below the
    shared-memory threshold).
    """
    name = f"inline-{kind}-{size_label(nbytes, '')}"
    rounds = 5 if nbytes >= 64 * MIB else 20

    def task() -> tuple[Any, tuple[Any, ...]]:
        if kind == "bytes-result":
            return tasks.make_bytes, (nbytes,)
        if kind == "bytes-arg":
            return tasks.size_of, (bytes(nbytes),)
        count = 64
        items = [np.full(nbytes // count // 4, i, dtype=np.float32) for i in range(count)]
        if any(snakepit.is_shared(item) for item in items):
            raise BenchError("an inline array went to shared memory")
        return tasks.size_of, (items,)

    def check(result: Any) -> None:
        size = len(result) if kind == "bytes-result" else result
        if kind == "bytes-result" and type(result) is not bytes:
            raise BenchError(f"got {type(result).__name__}, not bytes")
        expect(size, nbytes, "payload size")

    def prepare(submitter: str) -> Prepare:
        @contextlib.contextmanager
        def run(env: Env) -> Iterator[Timed]:
            submit = env.submit(submitter, 1)
            expect(submit(tasks.size_of, b"warm").result(), 4, "warm-up")
            fn, args = task()

            def call() -> Any:
                return submit(fn, *args).result()

            yield Timed(call, rounds=rounds, quick_rounds=3, warmup=1, check=check)

        return run

    what = {"bytes-arg": "bytes argument", "bytes-result": "bytes result"}.get(
        kind, f"64 arrays of {size_label(nbytes // 64)} argument"
    )
    label = f"inline {what} {size_label(nbytes)}" if kind != "arrays-arg" else f"inline {what}"
    return Case(
        name,
        label,
        (
            Impl("snakepit", "snakepit.Pool", prepare("snakepit")),
            Impl("peer", "ProcessPoolExecutor", prepare("peer")),
        ),
        group=f"inline-{kind}",
        nbytes=nbytes,
        workers=1,
        # Turn about: at 1 MiB one side's median moved 2x between runs.
        interleave=1,
        targets=(vs(name, label, 1.0, "no slower"),),
    )


# ------------------------------------------------------------------- torch


def _torch_case(name: str, title: str, shared: bool) -> Case:
    """The worker reads one element of a 100 MiB float32 tensor; 1 worker each.

    With torch imported, ``ProcessPoolExecutor`` does not pickle tensor data:
    torch's reducers move the storage into shared memory and pass a file
    descriptor. ``shared`` False: a new tensor every round (made untimed);
    True: one tensor already shared (``snakepit.share_tensor`` /
    ``Tensor.share_memory_()``), so neither side copies.
    """

    def prepare(impl: str) -> Prepare:
        @contextlib.contextmanager
        def run(env: Env) -> Iterator[Timed]:
            import torch

            submit = env.submit(impl, 1)
            warmed = submit(tasks.first_element, torch.full((4,), float(MARK))).result()
            expect(warmed, MARK, "torch warm-up")
            check = lambda value: expect(value, MARK, "torch hand-off")  # noqa: E731

            def fresh() -> Any:
                tensor = torch.empty(100 * MIB // 4)
                tensor[0] = MARK
                return tensor

            if shared:
                tensor = fresh()
                if impl == "snakepit":
                    tensor = snakepit.share_tensor(tensor)
                else:
                    tensor.share_memory_()

                def call() -> Any:
                    return submit(tasks.first_element, tensor).result()

                yield Timed(call, rounds=50, quick_rounds=10, warmup=1, check=check)
                return
            held: list[Any] = []

            def one() -> Any:
                return submit(tasks.first_element, held.pop()).result()

            yield Timed(
                one,
                rounds=10,
                quick_rounds=3,
                warmup=1,
                setup=lambda: held.append(fresh()),
                check=check,
            )

        return run

    targets = (
        (vs(name, "fresh torch tensor 100 MiB arg, read one", 1.0, "no slower"),)
        if not shared
        else (vs(name, "shared torch tensor 100 MiB arg, read one", None),)
    )
    return Case(
        name,
        title,
        (
            Impl("snakepit", "snakepit.Pool", prepare("snakepit"), requires=("torch",)),
            Impl(
                "peer",
                "ProcessPoolExecutor (torch's reducers)",
                prepare("peer"),
                requires=("torch",),
            ),
        ),
        nbytes=100 * MIB,
        workers=1,
        targets=targets,
    )


def torch_cases() -> tuple[Case, ...]:
    """A fresh and an already shared 100 MiB tensor as the argument."""
    return (
        _torch_case("torch-fresh-100MiB", "fresh 100 MiB torch tensor argument", False),
        _torch_case("torch-shared-100MiB", "shared 100 MiB torch tensor argument", True),
    )


# ------------------------------------------------------------------- arrow

ARROW_ROWS = (100 * MIB) // 16  # two 8-byte columns: 100 MiB


def _arrow_table() -> Any:
    """100 MiB (an int64 and a float64 column), one chunk, not in shared memory."""
    import pyarrow as pa

    ints = np.arange(ARROW_ROWS, dtype=np.int64)
    ints[0] = MARK
    table = pa.table({"i": ints, "f": np.random.default_rng(0).random(ARROW_ROWS)})
    expect(table.nbytes, 100 * MIB, "table size")
    return table


def _arrow_prepare(impl: str, shared: bool) -> Prepare:
    @contextlib.contextmanager
    def run(env: Env) -> Iterator[Timed]:
        import pyarrow as pa

        submit = env.submit(impl, 1)
        # The worker imports pyarrow (and maps the arena) before timing starts.
        expect(submit(tasks.first_value, pa.table({"i": [MARK]})).result(), MARK, "warm-up")
        table = _arrow_table()
        if shared:
            table = snakepit.share_table(table)
        elif snakepit.zero_copy.is_shared_table(table):
            raise BenchError("a fresh table is already in shared memory")

        def call() -> Any:
            return submit(tasks.first_value, table).result()

        rounds, warmup = (200, 5) if shared else ((20, 2) if impl == "snakepit" else (8, 1))
        check = lambda value: expect(value, MARK, "Arrow hand-off")  # noqa: E731
        yield Timed(call, rounds=rounds, quick_rounds=min(rounds, 20), warmup=warmup, check=check)

    return run


def arrow_cases() -> tuple[Case, ...]:
    """A 100 MiB ``pyarrow.Table`` as the argument: fresh (both), already shared (snakepit)."""
    fresh = "arrow-fresh-100MiB"
    return (
        Case(
            fresh,
            "fresh 100 MiB Arrow table argument",
            (
                Impl(
                    "snakepit",
                    "snakepit.Pool (IPC stream in shared memory)",
                    _arrow_prepare("snakepit", False),
                    requires=("pyarrow",),
                ),
                Impl(
                    "peer",
                    "pickle via ProcessPoolExecutor",
                    _arrow_prepare("peer", False),
                    requires=("pyarrow",),
                ),
            ),
            nbytes=100 * MIB,
            workers=1,
            targets=(vs(fresh, "Arrow table 100 MiB arg, read one", 1 / 10, ">= 10x faster"),),
        ),
        Case(
            "arrow-shared-100MiB",
            "shared 100 MiB Arrow table argument (snakepit.share_table)",
            (
                Impl(
                    "snakepit",
                    "snakepit.Pool",
                    _arrow_prepare("snakepit", True),
                    requires=("pyarrow",),
                ),
            ),
            nbytes=100 * MIB,
            workers=1,
        ),
    )
