"""A corpus of real error messages, produced by raising them at test time.

Each library module calls NumPy, PyTorch (CPU), SciPy, pandas, scikit-learn
or PyArrow the wrong way and captures what it raises, so the corpus follows
the installed versions; expectations are stated from the inputs (the shapes
and dtypes fed in), never copied from a message.

Errors that cannot be raised here (GPU-only ones; TensorFlow/Keras and JAX,
which are not installed) are rebuilt from the format strings in the
libraries' public sources, cited next to each, and raised from stand-in
classes with the real module and type names.

The corpus grew from 145 to over 300 cases in one step (issue 15). Before the
classifier was changed for the new cases, a third of them was set aside as a
held-out set by a fixed rule (:func:`held_out`), and the classifier was tuned
on the other two thirds only; ``tests/errors/test_corpus.py`` reports the
held-out accuracy on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib

from ._case import Case, fake_probe
from ._gpu import gpu_cases
from ._numpy import numpy_cases
from ._numpy_more import numpy_more_cases
from ._pandas import pandas_cases
from ._pyarrow import pyarrow_cases
from ._scipy import scipy_cases
from ._sklearn import sklearn_cases
from ._tabular import pandas_more_cases, pyarrow_more_cases, sklearn_more_cases
from ._tf_jax import jax_cases, tf_cases
from ._torch import torch_cases
from ._torch_nn import torch_nn_cases
from ._torch_ops import torch_ops_cases

__all__ = ["LIBRARIES", "SOURCES", "Case", "build", "fake_probe", "held_out"]

LIBRARIES = ("numpy", "torch", "pandas", "sklearn", "pyarrow", "scipy")
"""Libraries whose errors are raised for real here."""
SOURCES = ("gpu-source", "tf-source", "jax-source")
"""Messages rebuilt from a library's source, cited in each case."""

_ORIGINAL = (numpy_cases, torch_cases, pandas_cases, sklearn_cases, pyarrow_cases, gpu_cases)
_GROWN = (
    numpy_more_cases,
    torch_nn_cases,
    torch_ops_cases,
    scipy_cases,
    pandas_more_cases,
    sklearn_more_cases,
    pyarrow_more_cases,
    tf_cases,
    jax_cases,
)


def held_out(case: Case) -> bool:
    """Whether a grown case belongs to the held-out third.

    The rule is fixed and independent of the message: the first 8 bytes of the
    SHA-256 of the case id (``library-name``), as an integer, divisible by 3.
    """
    digest = hashlib.sha256(case.id.encode()).digest()
    return case.grown and int.from_bytes(digest[:8], "big") % 3 == 0


def build() -> list[Case]:
    """Every case, real ones first (libraries that are not installed contribute none)."""
    cases: list[Case] = []
    for section in _ORIGINAL:
        cases.extend(section())
    for section in _GROWN:
        cases.extend(dataclasses.replace(case, grown=True) for case in section())
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, duplicates
    return cases
