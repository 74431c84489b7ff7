"""A CUDA tensor to a worker and back: snakepit, torch.multiprocessing, ProcessPoolExecutor.

Run on a machine with a GPU (``bench/gpu/run_on_device.sh`` does, after the
build and the ``gpu`` tests)::

    python3 -m bench.gpu.cuda_ipc --out "$OUT" --budget 200

Each peer keeps one warm worker process and echoes a tensor through it: the
caller sends it, the worker receives it and sends it back, the caller gets it
(the same memory: nothing is copied by any peer on CUDA). Peers:

* ``snakepit``: ``Pool(1, device="cuda:0").call(echo, tensor)`` (the CUDA
  carrier: IPC handle out, the caller's own tensor back);
* ``snakepit, handles for all sizes``: the same with the threshold at 1 byte,
  so small tensors go by handle too instead of torch's pickling (where the
  handle starts to pay decides the CUDA threshold);
* ``torch.multiprocessing``: a spawned process fed by ``torch.multiprocessing``
  queues (torch's CUDA IPC reductions, with its event and ref-counting);
* ``ProcessPoolExecutor``: ``submit(echo, tensor)`` on a spawn-context
  executor (its pickler is multiprocessing's, which torch's reductions hook).

Sizes run from 8 bytes to 1 GiB; each peer's no-op call (no tensor) is
measured in the same rounds, so the report gives every peer's **cost beyond
its own no-op** per size, and its growth from 8 B to 1 GiB (which should be
none: a handle is 64 bytes whatever the size). Rounds interleave the peers
and sizes, so the machine's drift hits all alike; the spread over rounds is
reported. ``--mode cpu`` runs the same harness with CPU tensors and small
sizes, no GPU needed (the test suite runs it so this file is not dead code).
Results: ``cuda_ipc.json`` and ``cuda_ipc.txt`` under ``--out``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: name -> bytes, smallest first.
CUDA_SIZES = {"8B": 8, "1MiB": 1 << 20, "64MiB": 64 << 20, "1GiB": 1 << 30}
CPU_SIZES = {"8B": 8, "64KiB": 64 << 10, "4MiB": 4 << 20}


def noop() -> None:
    """The floor: a call with nothing to carry."""


def echo(tensor: Any) -> Any:
    """Send the argument back."""
    return tensor


def _queue_worker(requests: Any, replies: Any) -> None:
    # torch.multiprocessing's own loop: every request is answered with what came.
    while True:
        item = requests.get()
        if isinstance(item, str) and item == "stop":
            return
        replies.put(item)
        del item


@dataclass
class Peer:
    """One implementation: how it calls ``noop`` and ``echo``, and how it ends."""

    name: str
    call_noop: Callable[[], Any]
    call_echo: Callable[[Any], Any]
    close: Callable[[], None]
    note: str = ""


def _snakepit_peer(mode: str, threshold: int | None = None) -> Peer:
    import snakepit
    from snakepit import zero_copy

    before = zero_copy.threshold_bytes()
    if threshold is not None:
        # Below the threshold CUDA tensors are pickled by torch; this peer
        # sends every size by handle, to tell where the handle starts to pay.
        zero_copy.configure(threshold_bytes=threshold)
    try:
        pool = snakepit.Pool(1, device="cuda:0" if mode == "cuda" else "cpu")
    finally:
        zero_copy.configure(threshold_bytes=before)

    def call_echo(tensor: Any) -> Any:
        if threshold is None:
            return pool.call(echo, tensor)
        zero_copy.configure(threshold_bytes=threshold)
        try:
            return pool.call(echo, tensor)
        finally:
            zero_copy.configure(threshold_bytes=before)

    name = "snakepit" if threshold is None else "snakepit, handles for all sizes"
    return Peer(name, lambda: pool.call(noop), call_echo, pool.shutdown)


def _torch_peer() -> Peer:
    import torch.multiprocessing as tmp

    context = tmp.get_context("spawn")  # CUDA cannot be used in a forked child
    requests, replies = context.Queue(), context.Queue()
    process = context.Process(target=_queue_worker, args=(requests, replies), daemon=True)
    process.start()

    def round_trip(item: Any) -> Any:
        requests.put(item)
        return replies.get(timeout=120)

    def close() -> None:
        requests.put("stop")
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(5)

    return Peer("torch.multiprocessing", lambda: round_trip(None), round_trip, close)


def _executor_peer() -> Peer:
    executor = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    )
    return Peer(
        "ProcessPoolExecutor",
        lambda: executor.submit(noop).result(timeout=120),
        lambda tensor: executor.submit(echo, tensor).result(timeout=120),
        lambda: executor.shutdown(wait=True, cancel_futures=True),
    )


def make_tensor(mode: str, nbytes: int) -> Any:
    """A float32 tensor of ``nbytes`` (at least one element) on the GPU or CPU."""
    import torch

    count = max(1, nbytes // 4)
    device = "cuda:0" if mode == "cuda" else "cpu"
    tensor = torch.ones(count, dtype=torch.float32, device=device)
    if mode == "cuda":
        torch.cuda.synchronize()
    return tensor


@dataclass
class Cell:
    """Per-call seconds of one peer and one size ("noop" for the floor), by round."""

    rounds: list[list[float]] = field(default_factory=list)

    def medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds if r]


def _timed(function: Callable[[], Any], calls: int, deadline: float) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    return times


def run(mode: str, budget: float, rounds: int, calls: int, peers: list[str]) -> dict[str, Any]:
    """Measure every peer and size; the results as a JSON-ready dict."""
    started = time.monotonic()
    deadline = started + budget
    sizes = CUDA_SIZES if mode == "cuda" else CPU_SIZES
    makers = {
        "snakepit": lambda: _snakepit_peer(mode),
        "snakepit-all-ipc": lambda: _snakepit_peer(mode, threshold=1),
        "torch.multiprocessing": _torch_peer,
        "ProcessPoolExecutor": _executor_peer,
    }
    made: list[Peer] = []
    skipped: dict[str, str] = {}
    for name in peers:
        try:
            made.append(makers[name]())
        except Exception as exc:  # a peer that cannot start here is reported, not fatal
            skipped[name] = f"{type(exc).__name__}: {exc}"
    tensors = {label: make_tensor(mode, nbytes) for label, nbytes in sizes.items()}
    cells: dict[tuple[str, str], Cell] = {}
    try:
        for peer in made:  # warm: first opens, first imports (torch in the workers)
            peer.call_noop()
            for label, tensor in tensors.items():
                try:
                    back = peer.call_echo(tensor)
                    if mode == "cuda" and label == "8B":
                        peer.note = f"echo returns {type(back).__module__}.{type(back).__name__}"
                    del back
                except Exception as exc:
                    skipped[f"{peer.name} {label}"] = f"{type(exc).__name__}: {exc}"
        for _ in range(rounds):
            per_round = max(deadline - time.monotonic(), 0.0) / max(rounds, 1)
            for peer in made:
                cell_deadline = time.monotonic() + per_round / (len(made) * (len(sizes) + 1))
                cells.setdefault((peer.name, "noop"), Cell()).rounds.append(
                    _timed(peer.call_noop, calls, cell_deadline)
                )
                for label, tensor in tensors.items():
                    if f"{peer.name} {label}" in skipped:
                        continue
                    cell_deadline = time.monotonic() + per_round / (len(made) * (len(sizes) + 1))
                    cells.setdefault((peer.name, label), Cell()).rounds.append(
                        _timed(functools.partial(peer.call_echo, tensor), calls, cell_deadline)
                    )
            if time.monotonic() > deadline:
                break
    finally:
        for peer in made:
            try:
                peer.close()
            except Exception as exc:
                skipped[f"{peer.name} close"] = f"{type(exc).__name__}: {exc}"
    return _summary(mode, sizes, made, cells, skipped, time.monotonic() - started)


def _summary(
    mode: str,
    sizes: dict[str, int],
    made: list[Peer],
    cells: dict[tuple[str, str], Cell],
    skipped: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for peer in made:
        floor_cell = cells.get((peer.name, "noop"))
        floor = floor_cell.medians() if floor_cell else []
        entry: dict[str, Any] = {
            "noop_us": _stats(floor),
            "note": peer.note,
            "sizes": {},
        }
        for label in sizes:
            cell = cells.get((peer.name, label))
            if cell is None:
                continue
            medians = cell.medians()
            # Beyond the no-op of the same round: drift between rounds cancels.
            beyond = [m - f for m, f in zip(medians, floor, strict=False)]
            entry["sizes"][label] = {
                "bytes": sizes[label],
                "call_us": _stats(medians),
                "beyond_noop_us": _stats(beyond),
                "calls": sum(len(r) for r in cell.rounds),
            }
        small, large = entry["sizes"].get(next(iter(sizes))), entry["sizes"].get(list(sizes)[-1])
        if small and large and small["beyond_noop_us"]["median"] > 0:
            entry["growth_smallest_to_largest"] = (
                large["beyond_noop_us"]["median"] / small["beyond_noop_us"]["median"]
            )
        results[peer.name] = entry
    ratios: dict[str, dict[str, float]] = {}
    ours = results.get("snakepit")
    for name, entry in results.items():
        if ours is None or name == "snakepit":
            continue
        for label, cell in entry["sizes"].items():
            mine = ours["sizes"].get(label)
            if mine and mine["call_us"]["median"] > 0:
                ratios.setdefault(name, {})[label] = (
                    cell["call_us"]["median"] / mine["call_us"]["median"]
                )
    return {
        "mode": mode,
        "seconds": seconds,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": _gpu_name(mode),
        },
        "peers": results,
        "peer_over_snakepit_call_time": ratios,
        "skipped": skipped,
    }


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "rounds": 0}
    return {
        "median": statistics.median(values) * 1e6,
        "min": min(values) * 1e6,
        "max": max(values) * 1e6,
        "rounds": len(values),
    }


def _gpu_name(mode: str) -> str:
    if mode != "cuda":
        return ""
    try:
        import torch

        return str(torch.cuda.get_device_name(0))
    except Exception as exc:  # named in the report, never fatal
        return f"unknown GPU ({type(exc).__name__})"


def render(summary: dict[str, Any]) -> str:
    """The summary as text: per peer and size, call time and cost beyond the no-op."""
    lines = [
        f"CUDA IPC echo benchmark ({summary['mode']}), {summary['seconds']:.0f} s, "
        f"{summary['machine']['gpu'] or 'no GPU'}",
        f"{'peer':<24}{'size':>8}{'call µs':>12}{'beyond no-op µs':>18}{'(min..max)':>22}",
    ]
    for name, entry in summary["peers"].items():
        noop_us = entry["noop_us"]
        lines.append(f"{name:<24}{'no-op':>8}{noop_us['median']:>12.1f}{'':>18}")
        for label, cell in entry["sizes"].items():
            beyond = cell["beyond_noop_us"]
            spread = f"({beyond['min']:.1f}..{beyond['max']:.1f})"
            lines.append(
                f"{'':<24}{label:>8}{cell['call_us']['median']:>12.1f}"
                f"{beyond['median']:>18.1f}{spread:>22}"
            )
        if "growth_smallest_to_largest" in entry:
            growth = entry["growth_smallest_to_largest"]
            lines.append(f"{'':<24}growth smallest->largest: {growth:.2f}x")
        if entry["note"]:
            lines.append(f"{'':<24}{entry['note']}")
    for name, by_size in summary["peer_over_snakepit_call_time"].items():
        text = ", ".join(f"{label} {ratio:.2f}x" for label, ratio in by_size.items())
        lines.append(f"{name} / snakepit call time: {text}")
    for what, why in summary["skipped"].items():
        lines.append(f"skipped {what}: {why}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--mode", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds for the timed rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40, help="calls per cell and round (at most)")
    parser.add_argument(
        "--peers", default="snakepit,snakepit-all-ipc,torch.multiprocessing,ProcessPoolExecutor"
    )
    args = parser.parse_args(argv)
    if args.mode == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA GPU for torch here; use --mode cpu", file=sys.stderr)
            return 2
    summary = run(args.mode, args.budget, args.rounds, args.calls, args.peers.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda_ipc.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    text = render(summary)
    (args.out / "cuda_ipc.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
