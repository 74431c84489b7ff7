"""snakepit end-to-end ML demo.

Shows, in order: hardware detection and device selection, zero-copy tensors
handed to worker processes, structured errors handled with ``match``,
telemetry (events, including those raised inside workers), and crash
recovery. Run it with ``python examples/ml_demo/run_demo.py`` (``make demo``
runs the CLI demo; this one is run by ``tests/test_examples.py``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import model

import snakepit
from snakepit import hardware, telemetry
from snakepit.errors import (
    DeviceNotAvailableError,
    DtypeError,
    ShapeError,
    SnakepitError,
    WorkerCrashedError,
)


class Dashboard:
    """A telemetry handler that keeps what the demo prints at the end."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.call_ms: list[float] = []
        self.tokens_per_second: list[float] = []

    def __call__(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        name = ".".join(event[1:])
        self.counts[name] += 1
        if name == "call.stop":
            self.call_ms.append(1e3 * measurements["duration"])
        elif name == "ml.inference" and "tokens_per_second" in measurements:
            self.tokens_per_second.append(measurements["tokens_per_second"])


def main() -> int:
    print("== 1. hardware")
    info = hardware.detect()
    print(
        f"accelerator: {info.accelerator}; cpu: {info.cpu.model} ({info.cpu.logical_cores} threads)"
    )
    if not info.cuda.available:
        print(f"no CUDA: {info.cuda.reason}")
    device = hardware.select_with_fallback(["cuda", "mps", "cpu"])
    print(f"selected device: {device}")
    try:
        hardware.select("cuda:7")
    except DeviceNotAvailableError as exc:
        print(f"cuda:7 -> {type(exc).__name__}: {exc.message}")

    dashboard = Dashboard()
    telemetry.attach_many("ml-demo", telemetry.ALL_EVENTS, dashboard)
    try:
        with snakepit.Pool(workers=2, device=device if device == "cpu" else "auto") as pool:
            print("\n== 2. zero-copy tensors")
            rng = np.random.default_rng(0)
            weights = snakepit.share(rng.standard_normal((512, 256), dtype=np.float32))
            hidden = snakepit.share(rng.standard_normal((256, 10), dtype=np.float32))
            batch = snakepit.share(rng.standard_normal((64, 512), dtype=np.float32))
            started = time.perf_counter()
            logits = pool.call(model.infer, weights, hidden, batch)
            took = 1e3 * (time.perf_counter() - started)
            expected = np.maximum((batch - batch.mean(axis=0)) @ weights, 0) @ hidden
            print(
                f"logits {logits.shape} in {took:.2f} ms; weights travelled as a "
                f"{len(repr(snakepit.ref_of(weights)))}-char TensorRef, not "
                f"{weights.nbytes >> 10} KiB; matches numpy: "
                f"{bool(np.allclose(logits, expected, rtol=1e-4, atol=1e-3))}"
            )

            print("\n== 3. structured errors")
            wrong = snakepit.share(np.ones((64, 300), dtype=np.float32))
            for bad_batch in (wrong, snakepit.share(np.ones((64, 512), dtype=np.int32))):
                try:
                    pool.call(model.infer, weights, hidden, bad_batch)
                except SnakepitError as err:
                    match err:
                        case ShapeError(shape_a, shape_b, operation):
                            print(f"ShapeError: {shape_a} vs {shape_b} in {operation}")
                        case DtypeError(expected, got):
                            print(f"DtypeError: expected {expected}, got {got}")
                        case _:
                            print(f"{type(err).__name__}: {err.message}")
                    if err.suggestion:
                        print(f"  suggestion: {err.suggestion}")

            print("\n== 4. crash recovery")
            try:
                pool.call(model.crash_native_code)
            except WorkerCrashedError as err:
                print(f"worker died: {err.exit_kind} (signal {err.signal}); supervisor unharmed")
                if err.remote_traceback:
                    # The frame of our own code that called into native code.
                    lines = err.remote_traceback.splitlines()
                    frames = [ln for ln in lines if "model.py" in ln]
                    print(f"  crashed in: {frames[0].strip() if frames else '?'}")
            started = time.perf_counter()
            logits = pool.call(model.infer, weights, hidden, batch)
            print(f"next call served in {1e3 * (time.perf_counter() - started):.1f} ms")
    finally:
        telemetry.detach("ml-demo")

    print("\n== 5. telemetry")
    for name in ("call.stop", "call.exception", "worker.crash", "worker.restart", "ml.inference"):
        print(f"{name:>15}: {dashboard.counts[name]}")
    if dashboard.call_ms:
        print(f"median call: {statistics.median(dashboard.call_ms):.2f} ms")
    if dashboard.tokens_per_second:
        print(
            f"inference (reported from workers): {max(dashboard.tokens_per_second):,.0f} outputs/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
