"""A user's script with wrong calls: mypy must flag each marked line.

Each ``# expect: <code>`` comment names the mypy error code expected on its
line (see ``check_user_types.py``); no other line may have an error.
"""

from __future__ import annotations

import snakepit


def scale(values: list[float], factor: float = 2.0) -> list[float]:
    return [v * factor for v in values]


def label(index: int) -> str:
    return f"item-{index}"


def main() -> None:
    with snakepit.Pool(1) as pool:
        pool.submit(scale, "not a list")  # expect: call-overload
        pool.submit(scale, [1.0], factr=3.0)  # expect: call-arg
        pool.call(label)  # expect: call-overload
        text: int = pool.call(label, 3)  # expect: assignment
        pool.options(device="cpu").submit(label, "3")  # expect: call-overload
        print(text)
