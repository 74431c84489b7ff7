"""One verb set for every kind: share, ref_of, from_ref, is_shared dispatch on type."""

from __future__ import annotations

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit.errors import InvalidDescriptorError, SharedMemoryError


def test_numpy_round_trip_through_the_verbs() -> None:
    shared = zero_copy.share(np.arange(12, dtype=np.int64))
    assert zero_copy.is_shared(shared)
    ref = zero_copy.ref_of(shared)
    assert isinstance(ref, zero_copy.TensorRef)
    with ref:
        view = zero_copy.from_ref(ref, readonly=True)
        np.testing.assert_array_equal(view, np.arange(12))
        assert not view.flags.writeable
        del view
    # Lists and other array-likes are taken as numpy arrays, as before.
    assert zero_copy.is_shared(zero_copy.share([1, 2, 3]))


def test_arrow_tables_through_the_verbs() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"x": np.arange(1000, dtype=np.int64)})
    assert not zero_copy.is_shared(table)
    with pytest.raises(SharedMemoryError, match="share_table"):
        zero_copy.ref_of(table)
    shared = zero_copy.share(table)
    assert isinstance(shared, pa.Table)
    assert zero_copy.is_shared(shared)
    assert zero_copy.share(shared) is shared
    ref = zero_copy.ref_of(shared)
    assert isinstance(ref, zero_copy.ArrowRef)
    opened = zero_copy.from_ref(ref)
    assert opened.equals(table)
    assert zero_copy.is_shared(opened)
    del opened
    ref.release()


def test_torch_tensors_through_the_verbs() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.arange(1000, dtype=torch.float32)
    assert not zero_copy.is_shared(tensor)
    with pytest.raises(SharedMemoryError, match="share"):
        zero_copy.ref_of(tensor)
    shared = zero_copy.share(tensor)
    assert isinstance(shared, torch.Tensor)
    assert zero_copy.is_shared(shared)
    assert zero_copy.is_shared(shared[10:20])
    ref = zero_copy.ref_of(shared[10:20])
    np.testing.assert_array_equal(zero_copy.from_ref(ref), np.arange(10, 20, dtype=np.float32))
    ref.release()


def test_bad_arguments_get_typed_errors() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        zero_copy.ref_of(object())
    with pytest.raises(InvalidDescriptorError, match="expected a TensorRef"):
        zero_copy.from_ref("not a ref")
    assert not zero_copy.is_shared(object())


def test_top_level_names_are_the_verbs() -> None:
    assert snakepit.share is zero_copy.share
    assert snakepit.ref_of is zero_copy.ref_of
    assert snakepit.from_ref is zero_copy.from_ref
    assert snakepit.is_shared is zero_copy.is_shared
    assert snakepit.share_tensor is zero_copy.share_tensor
