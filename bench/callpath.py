"""No-op latency and 4-thread throughput against their floors, in one run.

Not a test: ``python bench/callpath.py [--reps 5] [--load]``. Prints, per
repetition, the os.pipe ping-pong floor, snakepit's no-op round trip (with
the default spinning and with none), and (``--throughput``) 20,000 no-op
calls from 4 threads against ProcessPoolExecutor (pools of 2 workers).
``--load`` runs a competing busy process for the whole run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time

import snakepit


def noop() -> None:
    """The called function."""


def _pipe_child(r_fd: int, w_fd: int) -> None:
    while True:
        b = os.read(r_fd, 1)
        if not b or b == b"q":
            break
        os.write(w_fd, b)
    os._exit(0)


def pipe_pingpong(n: int) -> float:
    """Median seconds of a 1-byte round trip between two processes."""
    p2c_r, p2c_w = os.pipe()
    c2p_r, c2p_w = os.pipe()
    proc = mp.get_context("fork").Process(target=_pipe_child, args=(p2c_r, c2p_w))
    proc.start()
    os.close(p2c_r)
    os.close(c2p_w)
    times = []
    for i in range(n + n // 10):
        t0 = time.perf_counter()
        os.write(p2c_w, b"x")
        os.read(c2p_r, 1)
        if i >= n // 10:
            times.append(time.perf_counter() - t0)
    os.write(p2c_w, b"q")
    proc.join(10)
    os.close(p2c_w)
    os.close(c2p_r)
    return statistics.median(times)


def pool_noop(pool: snakepit.Pool, n: int) -> float:
    """Median seconds of ``pool.call(noop)``."""
    for _ in range(n // 10):
        pool.call(noop)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pool.call(noop)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(call: object, total: int, threads: int) -> tuple[float, float]:
    """Calls/s and p99 seconds of ``threads`` threads making synchronous calls."""
    per = total // threads
    lats: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def client(i: int) -> None:
        out = lats[i]
        barrier.wait()
        for _ in range(per):
            t0 = time.perf_counter()
            call()  # type: ignore[operator]
            out.append(time.perf_counter() - t0)

    ths = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in ths:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    allv = sorted(v for lat in lats for v in lat)
    return len(allv) / wall, allv[int(0.99 * (len(allv) - 1))]


def spread(values: list[float]) -> str:
    """Median and range of ``values``."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    """Run the measurements and print ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--total", type=int, default=20000)
    parser.add_argument("--no-latency", action="store_true")
    args = parser.parse_args()
    hog = None
    if args.load:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        ratios: dict[str, list[float]] = {"spin/pipe": [], "nospin/pipe": [], "spin/nospin": []}
        tput: dict[str, list[float]] = {"cps ratio": [], "p99 ratio": []}
        spin = snakepit.Pool(2)
        nospin = snakepit.Pool(2, spin_seconds=0.0)
        ppe = cf.ProcessPoolExecutor(2) if args.throughput else None
        try:
            if ppe is not None:
                list(ppe.map(noop_ppe, range(100)))
            for rep in range(args.reps):
                if not args.no_latency:
                    pipe = pipe_pingpong(args.n)
                    a = pool_noop(spin, args.n)
                    b = pool_noop(nospin, args.n)
                    ratios["spin/pipe"].append(a / pipe)
                    ratios["nospin/pipe"].append(b / pipe)
                    ratios["spin/nospin"].append(a / b)
                    print(
                        f"rep {rep}: pipe {pipe * 1e6:.1f} us, spin {a * 1e6:.1f} us, "
                        f"nospin {b * 1e6:.1f} us",
                        flush=True,
                    )
                if ppe is not None:
                    ppe_call = functools.partial(_ppe_call, ppe)
                    cps_p, p99_p = throughput(ppe_call, args.total, 4)
                    cps_s, p99_s = throughput(functools.partial(spin.call, noop), args.total, 4)
                    tput["cps ratio"].append(cps_s / cps_p)
                    tput["p99 ratio"].append(p99_s / p99_p)
                    print(
                        f"rep {rep}: PPE {cps_p:.0f}/s p99 {p99_p * 1e6:.0f} us; "
                        f"snakepit {cps_s:.0f}/s p99 {p99_s * 1e6:.0f} us",
                        flush=True,
                    )
        finally:
            spin.shutdown()
            nospin.shutdown()
            if ppe is not None:
                ppe.shutdown()
        for name, values in {**ratios, **tput}.items():
            if values:
                print(f"{name}: {spread(values)}")
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def noop_ppe(_: int) -> None:
    """The function ProcessPoolExecutor calls."""


def _ppe_call(ppe: cf.ProcessPoolExecutor) -> None:
    ppe.submit(noop_ppe, 0).result()


if __name__ == "__main__":
    main()
