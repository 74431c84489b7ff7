"""A user's script that type-checks: what mypy infers for pool calls.

Checked by ``tests/typecheck/check_user_types.py`` (``make typecheck``), from
outside the repository, so it also proves mypy finds an editable install.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any, assert_type

import snakepit


def scale(values: list[float], factor: float = 2.0) -> list[float]:
    return [v * factor for v in values]


def label(index: int) -> str:
    return f"item-{index}"


def main() -> None:
    with snakepit.Pool(1) as pool:
        assert_type(pool.submit(scale, [1.0, 2.0]), Future[list[float]])
        assert_type(pool.submit(scale, [1.0], factor=3.0), Future[list[float]])
        assert_type(pool.call(label, 3), str)
        assert_type(pool.options(timeout=5).call(label, 3), str)
        assert_type(pool.options(session="s").submit(label, 1), Future[str])
        assert_type(list(pool.map(label, range(3))), list[str])
        assert_type(pool.call("math:sqrt", 4.0), Any)

        async def run() -> str:
            return await pool.acall(label, 4)

        assert_type(asyncio.run(run()), str)


if __name__ == "__main__":
    main()
