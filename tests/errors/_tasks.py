"""Functions the error tests run inside pool workers (importable by reference)."""

from __future__ import annotations

from typing import Any


def torch_matmul_mismatch() -> Any:
    """Multiply a (3, 4) by a (2, 2) tensor: PyTorch refuses the shapes."""
    import torch

    return torch.randn(3, 4) @ torch.randn(2, 2)


def wrapped_key_error() -> None:
    """A KeyError re-raised as a ValueError, with a note: a remote cause chain."""
    try:
        {}["missing"]
    except KeyError as exc:
        error = ValueError("lookup failed")
        error.add_note("while reading the config")
        raise error from exc
