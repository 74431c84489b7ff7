"""Forged and malformed descriptors raise typed errors; nothing crashes."""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snakepit
from snakepit.errors import InvalidDescriptorError, SnakepitError


@pytest.fixture
def good_ref() -> snakepit.TensorRef:
    array = snakepit.zeros((16, 16), "float32")
    # Keep the array alive as long as the test runs.
    good_ref.array = array  # type: ignore[attr-defined]
    return snakepit.ref_of(array)


@pytest.fixture
def foreign_segment() -> Iterator[str]:
    """A segment with a valid-looking snakepit name but no snakepit header."""
    name = f"snakepit-{os.getpid()}-{secrets.token_hex(8)}"
    segment = shared_memory.SharedMemory(name=name, create=True, size=1 << 16)
    segment.buf[:16] = b"not a snakepit!!"
    try:
        yield "/" + name
    finally:
        segment.close()
        segment.unlink()


@pytest.mark.parametrize(
    "region",
    [
        "/etc/passwd",
        "/snakepit-1-../../../../etc/passwd",
        "/snakepit-abc-0123456789abcdef",
        "/snakepit-123-0123456789ABCDEF",
        "/snakepit-123-0123456789abcde",
        "/snakepit-123-0123456789abcdef0",
        "/snakepit-0-0123456789abcdef",
        "snakepit-123-0123456789abcdef",
        "/snakepit-123-0123456789abcdef/x",
        "",
        "/" + "a" * 300,
        "/snakepit-123-0123456789abcd\x00f",
    ],
)
def test_bad_region_names_are_rejected(good_ref: snakepit.TensorRef, region: str) -> None:
    forged = dataclasses.replace(good_ref, region=region)
    with pytest.raises(InvalidDescriptorError):
        snakepit.from_ref(forged)


def test_nonexistent_region_is_rejected(good_ref: snakepit.TensorRef) -> None:
    forged = dataclasses.replace(good_ref, region=f"/snakepit-{os.getpid()}-{'0' * 16}")
    with pytest.raises(InvalidDescriptorError, match="snakepit-"):
        snakepit.from_ref(forged)


def test_wrong_magic_is_rejected(good_ref: snakepit.TensorRef, foreign_segment: str) -> None:
    forged = dataclasses.replace(good_ref, region=foreign_segment, region_size=1 << 16)
    with pytest.raises(InvalidDescriptorError):
        snakepit.from_ref(forged)


@pytest.mark.parametrize(
    "changes",
    [
        {"offset": 1 << 40},
        {"offset": 7},
        {"offset": 0},
        {"offset": -64},
        {"shape": (1 << 20,)},
        {"shape": (1 << 62, 1 << 62)},
        {"shape": (-1, 16)},
        {"strides": (64, 4, 4)},
        {"strides": (-64, 4)},
        {"byte_offset": 1 << 30},
        {"byte_offset": -4},
        {"nbytes": 1 << 60},
        {"nbytes": -1},
        {"region_size": 123},
        {"region_size": 0},
        {"region_size": 1 << 64},
        {"offset": 1 << 64},
        {"nbytes": 1 << 64},
        {"strides": (1 << 64, 4)},
        {"dtype": "float128"},
        {"dtype": "object"},
        {"device": "cuda:0"},
        {"shape": [16, 16]},
        {"shape": (16.0, 16)},
    ],
)
def test_malformed_fields_are_rejected(
    good_ref: snakepit.TensorRef, changes: dict[str, object]
) -> None:
    forged = dataclasses.replace(good_ref, **changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidDescriptorError):
        snakepit.from_ref(forged)


def test_not_a_ref_is_rejected() -> None:
    with pytest.raises(InvalidDescriptorError):
        snakepit.from_ref({"region": "/snakepit-1-0123456789abcdef"})  # type: ignore[arg-type]


names = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"/snakepit-[0-9]{1,7}-[0-9a-f]{16}", fullmatch=True),
    st.just("/snakepit-1-../../etc"),
)
ints = st.one_of(st.integers(-(1 << 70), 1 << 70), st.integers(0, 1 << 20))


@settings(
    max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    use_real_region=st.booleans(),
    region=names,
    offset=ints,
    nbytes=ints,
    byte_offset=ints,
    region_size=ints,
    shape=st.lists(st.integers(-4, 1 << 40), max_size=5),
    strides=st.lists(st.integers(-(1 << 40), 1 << 40), max_size=5),
    dtype=st.sampled_from([*snakepit.zero_copy.SUPPORTED_DTYPES, "junk", ""]),
)
def test_random_descriptors_never_crash(
    use_real_region: bool,
    region: str,
    offset: int,
    nbytes: int,
    byte_offset: int,
    region_size: int,
    shape: list[int],
    strides: list[int],
    dtype: str,
) -> None:
    real = snakepit.zeros(256, "uint8")
    real_ref = snakepit.ref_of(real)
    ref = snakepit.TensorRef(
        id="forged",
        shape=tuple(shape),
        dtype=dtype,
        strides=tuple(strides),
        offset=offset,
        region=real_ref.region if use_real_region else region,
        nbytes=nbytes,
        byte_offset=byte_offset,
        region_size=real_ref.region_size if use_real_region else region_size,
    )
    try:
        view = snakepit.from_ref(ref)
    except SnakepitError:
        return
    # Accepted: the view must lie inside the real block.
    low, high = ref.extent()
    assert 0 <= low <= high <= ref.nbytes
    assert view.nbytes <= max(ref.nbytes, 0) or view.size == 0


def _views(base: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    grid = base[:60].reshape(3, 4, 5)
    return {
        "1-d": base,
        "3-d": grid,
        "offset": base[7:19],
        "strided": base[::3],
        "transposed": grid.T,
        "size-1-dim": base[:5].reshape(5, 1),
        "0-d": base[3:4].reshape(()),
        "empty": base[:0],
    }


@pytest.mark.parametrize(
    "name", ["1-d", "3-d", "offset", "strided", "transposed", "size-1-dim", "0-d", "empty"]
)
@pytest.mark.parametrize("readonly", [False, True])
def test_an_opened_block_has_the_senders_layout(name: str, readonly: bool) -> None:
    base = snakepit.share(np.arange(64, dtype=np.float64))
    view = _views(base)[name]
    opened = snakepit.from_ref(snakepit.ref_of(view), mode="acquire", readonly=readonly)
    assert (opened.shape, opened.strides, opened.dtype) == (view.shape, view.strides, view.dtype)
    assert np.array_equal(opened, view)
    assert opened.flags.writeable is not readonly
    assert snakepit.is_shared(opened)
    if not readonly and opened.size:
        first = (0,) * opened.ndim
        opened[first] = -1.0  # the same memory
        assert view[first] == -1.0
