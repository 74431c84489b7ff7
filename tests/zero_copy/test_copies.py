"""Copies into shared memory: the C core's copy (any relative alignment,
streaming above a size), and share() choosing it or np.copyto."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import _core, zero_copy


def _pattern(nbytes: int) -> np.ndarray[Any, Any]:
    return (np.arange(nbytes, dtype=np.uint64) * 131 + 7).astype(np.uint8)


@pytest.mark.parametrize("src_offset", [0, 1, 16, 63])
@pytest.mark.parametrize("dst_offset", [0, 5, 48])
@pytest.mark.parametrize("nbytes", [0, 1, 63, 64, 65, 4097, 70_001])
def test_copy_into_any_alignment(src_offset: int, dst_offset: int, nbytes: int) -> None:
    source = _pattern(nbytes + 64)
    target = np.full(nbytes + 128, 0xA5, dtype=np.uint8)
    _core.copy_into(
        target[dst_offset : dst_offset + nbytes], source[src_offset : src_offset + nbytes]
    )
    np.testing.assert_array_equal(
        target[dst_offset : dst_offset + nbytes], source[src_offset : src_offset + nbytes]
    )
    assert (target[:dst_offset] == 0xA5).all()
    assert (target[dst_offset + nbytes :] == 0xA5).all()


def test_copy_into_streams_large_copies_exactly() -> None:
    nbytes = _core.COPY_STREAM_BYTES + 4096 + 17
    source = _pattern(nbytes + 16)[16:]  # 16 bytes into a page, like a large numpy array
    target = np.zeros(nbytes + 64, dtype=np.uint8)
    _core.copy_into(target[48 : 48 + nbytes], source)
    np.testing.assert_array_equal(target[48 : 48 + nbytes], source)
    assert target[47] == 0
    assert target[48 + nbytes] == 0


def test_copy_into_refuses_what_it_cannot_copy() -> None:
    source = np.arange(16, dtype=np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.copy_into(np.empty(8, np.float32), source[::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.copy_into(np.empty(32, np.float32)[::2], source)
    readonly = np.empty(16, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        _core.copy_into(readonly, source)
    with pytest.raises(ValueError, match="64 bytes into 60"):
        _core.copy_into(np.empty(15, np.float32), source)
    with pytest.raises(TypeError):
        _core.copy_into(bytearray(64), source)  # type: ignore[arg-type]
    # Overlapping arrays are refused by the core (nothing written).
    with pytest.raises(_core.CoreError) as info:
        _core.copy_into(source[4:12], source[:8])
    assert info.value.status == _core.Status.INVALID
    np.testing.assert_array_equal(source, np.arange(16, dtype=np.float32))


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(300_000, dtype=np.float32),  # contiguous: the core's copy
        lambda: np.arange(600_000, dtype=np.float32)[::2],  # strided: np.copyto
        lambda: np.arange(300_000, dtype=np.float32).reshape(600, 500).T,  # Fortran order
        lambda: np.array(3.5),  # zero dimensions
        lambda: np.arange(300_001) % 3 == 0,  # bool, odd length
        lambda: np.zeros((0, 5), dtype=np.float64),
    ],
)
def test_share_copies_every_layout(make: Any) -> None:
    source = make()
    shared = snakepit.share(source)
    assert zero_copy.is_shared(shared)
    assert shared.shape == source.shape
    assert shared.dtype == source.dtype
    np.testing.assert_array_equal(shared, source)
    assert shared.flags.c_contiguous


def test_share_uses_the_core_copy_for_contiguous_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = _core.copy_into

    def spy(destination: Any, source: Any) -> None:
        calls.append(source.nbytes)
        real(destination, source)

    monkeypatch.setattr(_core, "copy_into", spy)
    source = np.arange(1 << 18, dtype=np.float32)
    np.testing.assert_array_equal(snakepit.share(source), source)
    assert calls == [source.nbytes]
    np.testing.assert_array_equal(snakepit.share(source[::2]), source[::2])
    assert calls == [source.nbytes]  # strided: numpy's own copy


def test_dtype_memo_tells_equal_dtypes_apart() -> None:
    from snakepit.errors import DtypeError
    from snakepit.zero_copy import _arena, _dtypes

    plain_v2 = np.dtype("V2")
    assert plain_v2 == _dtypes.BFLOAT16  # equal, yet only one can be shared
    for _ in range(2):  # the second round is served from the memo
        assert zero_copy.empty(4, _dtypes.BFLOAT16).dtype.metadata == {"snakepit": "bfloat16"}
        with pytest.raises(DtypeError):
            zero_copy.empty(4, plain_v2)
    # Bounded, whatever the number of distinct dtype objects seen.
    for k in range(_arena._RESOLVED_MAX + 10):
        tagged = np.dtype("float32", metadata={"k": k})
        assert zero_copy.empty(2, tagged).dtype == np.float32
    assert len(_arena._resolved) <= _arena._RESOLVED_MAX
