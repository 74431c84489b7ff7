"""JAX arrays through a pool, checked in a process of its own (run as a module).

Prints the name of each check that passed; exits non-zero at the first that
fails. ``tests/pool/test_pool_host_arrays.py`` runs it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import snakepit
from snakepit.zero_copy._runtime import threshold_bytes

from . import _jax_tasks as tasks

COUNT = 1 << 19  # 2 MiB of float32: above the 1 MiB threshold


def _in_shared_memory(place: str | None) -> bool:
    return bool(place) and str(place).startswith("/dev/shm/snakepit-")


def main() -> None:
    with snakepit.Pool(1) as pool:
        kind, place = pool.call(tasks.where, jnp.arange(COUNT, dtype=jnp.float32))
        assert kind.endswith("ArrayImpl"), kind
        assert _in_shared_memory(place), place
        print("argument", flush=True)

        result = pool.call(tasks.jax_range, COUNT)
        assert isinstance(result, jax.Array), type(result)
        assert _in_shared_memory(tasks.where(result)[1])
        assert bool((result == jnp.arange(COUNT, dtype=jnp.float32)).all())
        print("result", flush=True)

        sent = jnp.arange(COUNT, dtype=jnp.float32)
        _, seen_by_worker = pool.call(tasks.where, sent)
        back = pool.call(tasks.echo, sent)
        # The worker sent back the block it was lent: no copy on its side.
        assert tasks.where(back)[1] == seen_by_worker
        assert bool((back == sent).all())
        print("echo", flush=True)

        small = jnp.arange(16, dtype=jnp.int32)
        back = pool.call(tasks.echo, small)
        assert isinstance(back, jax.Array)
        assert back.tolist() == list(range(16))
        assert small.nbytes < threshold_bytes()
        print("small", flush=True)


if __name__ == "__main__":
    main()
