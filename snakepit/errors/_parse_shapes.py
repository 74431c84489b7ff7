"""Operand shapes out of NumPy, PyTorch, pandas, PyArrow and scikit-learn messages.

Part of :func:`snakepit.errors._parse.parse_context`. Every pattern matches a
message format those libraries really produce (the corpus in
``tests/errors/corpus/`` raises them). The specific formats of
``_SHAPE_RULES`` are tried in order before the generic fallbacks
(``torch.Size`` lists, then any two tuples of ints).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from snakepit.errors._shape_rules import _LIST, _TUPLE_BODY, EXTRA_SHAPE_RULES, Context, _ints

__all__ = ["parse_shapes"]

_SHAPE_X = re.compile(r"\b(\d+(?:x\d+)+) and (\d+(?:x\d+)+)\b")
_SIZE_OF_TENSOR = re.compile(
    r"size of (?:the )?tensor(?: a)? \((-?\d+)\) must match the (?:existing )?size"
    r"(?: of tensor b)? \((\d+)\) at non-singleton dimension (\d+)"
)
_EXPAND_SIZES = re.compile(r"Target sizes: " + _LIST + r"\.?\s*Tensor sizes: " + _LIST)
_NUMPY_CORE_DIM = re.compile(
    r"mismatch in its core dimension (\d+).{0,200}?\(size (\d+) is different from (\d+)\)",
    re.DOTALL,
)
_TORCH_SIZE = re.compile(r"torch\.Size\(\[([\d,\s]*)\]\)")
_TORCH_RESHAPE = re.compile(r"shape '" + _LIST + r"' is invalid for input of size (\d+)")
# numpy prints an inferred (-1) dimension as "newaxis": "into shape (3,newaxis)"
_NUMPY_RESHAPE = re.compile(r"cannot reshape array of size (\d+) into shape \(([-\w,\s]*)\)")
# A parenthesised tuple of ints that is not a call ("reshape(1, 2)", "int64(1)")
# nor the remapped half of numpy's "(3,4)->(3,newaxis,4)".
_TUPLE = re.compile(r"(?<![\w\])])(?<!->)\((\s*\d+\s*(?:,\s*\d+\s*)*,?\s*|\s*)\)")
_SHAPE_WORDS = re.compile(r"shape|broadcast|aligned|size|dimension|match", re.IGNORECASE)


def _shapes(*texts: str) -> list[list[int]]:
    return [_ints(t) for t in texts]


def _by_groups(
    pattern: str, build: Callable[[re.Match[str]], Context], flags: int = 0
) -> tuple[re.Pattern[str], Callable[[re.Match[str]], Context]]:
    return re.compile(pattern, flags), build


# Specific formats, tried in order before the generic "two tuples" fallback.
_SHAPE_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Context]]] = [
    # torch: "size mismatch, got input (3), mat (3x4), vec (2)"
    _by_groups(
        r"got input \((\d+)\), mat \((\d+)x(\d+)\), vec \((\d+)\)",
        lambda m: {"shapes": _shapes(m[2] + "," + m[3], m[4]), "operation": "mv"},
    ),
    # torch: "Expected size for first two dimensions of batch2 tensor to be: [2, 4]
    # but got: [2, 5]."
    _by_groups(
        r"first two dimensions of \w+ tensor to be: " + _LIST + r" but got: " + _LIST,
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "bmm"},
    ),
    # torch: "inconsistent tensor size, expected tensor [3] and src [4] to have the
    # same number of elements"
    _by_groups(
        r"inconsistent tensor size, expected tensor " + _LIST + r" and src " + _LIST,
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "dot"},
    ),
    # numpy: "shapes (3,4) and (2,2) not aligned: 4 (dim 1) != 2 (dim 0)"
    _by_groups(
        r"shapes " + _TUPLE_BODY + r" and " + _TUPLE_BODY + r" not aligned",
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "matmul"},
    ),
    # torch: "Given groups=1, weight of size [8, 3, 3, 3], expected input[1, 4, 10, 10]
    # to have 3 channels, but got 4 channels instead"
    _by_groups(
        r"weight of size " + _LIST + r", expected input\s?" + _LIST + r" to have \d+ channels",
        lambda m: {"shapes": _shapes(m[1], m[2]), "dimension": 1, "operation": "conv"},
    ),
    # torch: "Given normalized_shape=[4], expected input with shape [*, 4], but got
    # input of size[3, 5]"
    _by_groups(
        r"normalized_shape=" + _LIST + r", expected input with shape \[[^\]]*\], but got "
        r"input of size\s?" + _LIST,
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "normalize"},
    ),
    # torch: "running_mean should contain 5 elements not 4"
    _by_groups(
        r"running_\w+ should contain (\d+) elements not (\d+)",
        lambda m: {"shapes": _shapes(m[1], m[2]), "dimension": 1, "operation": "normalize"},
    ),
    # torch (RNNs): "input.size(-1) must be equal to input_size. Expected 4, got 3"
    # (kept as [input's, expected] like scikit-learn's feature counts)
    _by_groups(
        r"must be equal to input_size\. Expected (\d+), got (\d+)",
        lambda m: {"shapes": _shapes(m[2], m[1]), "dimension": -1, "operation": "features"},
    ),
    # torch: "unflatten: Provided sizes [5, 3] don't multiply up to the size of dim 0
    # (12) in the input tensor"
    _by_groups(
        r"Provided sizes " + _LIST + r" don't multiply up to the size of dim \d+ \((\d+)\)",
        lambda m: {"shapes": _shapes(m[2], m[1]), "operation": "reshape"},
    ),
    # torch: "Tensors must have same number of dimensions: got 2 and 1"; numpy:
    # "matmul: Input operand 1 does not have enough dimensions (has 0, ..."
    _by_groups(
        r"must have same number of dimensions|does not have enough dimensions",
        lambda m: {"operation": "ndim"},
    ),
    # torch: "view size is not compatible with input tensor's size and stride ..."
    _by_groups(r"view size is not compatible with input tensor", lambda m: {"operation": "view"}),
    # torch: "Sizes of tensors must match except in dimension 0. Expected size 4 but
    # got size 5 for tensor number 1 in the list."
    _by_groups(
        r"Sizes of tensors must match except in dimension \d+\. Expected size (\d+) but got "
        r"size (\d+)",
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "concatenate"},
    ),
    # numpy: "... must match exactly, but along dimension 1, the array at index 0 has
    # size 4 and the array at index 1 has size 5"
    _by_groups(
        r"along dimension (\d+), the array at index \d+ has size (\d+) and the array at "
        r"index \d+ has size (\d+)",
        lambda m: {
            "shapes": _shapes(m[2], m[3]),
            "dimension": int(m[1]),
            "operation": "concatenate",
        },
    ),
    # torch: "stack expects each tensor to be equal size, but got [3, 4] at entry 0
    # and [3, 5] at entry 1"
    _by_groups(
        r"stack expects each tensor to be equal size, but got " + _LIST + r" at entry \d+ "
        r"and " + _LIST,
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "stack"},
    ),
    # numpy: "all input arrays must have the same shape"
    _by_groups(r"all input arrays must have the same shape", lambda m: {"operation": "stack"}),
    # pandas: "Length of values (2) does not match length of index (3)"
    _by_groups(
        r"Length of values \((\d+)\) does not match length of index \((\d+)\)",
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "length"},
    ),
    # pandas: "Length mismatch: Expected axis has 2 elements, new values have 3 elements"
    _by_groups(
        r"Expected axis has (\d+) elements?, new values have (\d+) elements?",
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "length"},
    ),
    # pyarrow: "Column 1 named b expected length 3 but got length 2"
    _by_groups(
        r"expected length (\d+) but got length (\d+)",
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "length"},
        re.IGNORECASE,
    ),
    # pyarrow: "Arrays were not all the same length: 1 vs 2"
    _by_groups(
        r"not all the same length: (\d+) vs (\d+)",
        lambda m: {"shapes": _shapes(m[1], m[2]), "operation": "length"},
    ),
    # scikit-learn: "Found input variables with inconsistent numbers of samples: [5, 4]"
    _by_groups(
        r"inconsistent numbers of samples: " + _LIST,
        lambda m: {
            "shapes": [[n] for n in _ints(m[1])],
            "dimension": 0,
            "operation": "length",
        },
    ),
    # pandas: "All arrays must be of the same length", "Columns must be same length as
    # key"; pyarrow: "Mismatching child array lengths"
    _by_groups(
        r"must be (?:of the )?same length|Mismatching child array lengths",
        lambda m: {"operation": "length"},
    ),
    # scikit-learn: "X has 4 features, but LinearRegression is expecting 3 features as input."
    _by_groups(
        r"X has (\d+) features?, but \w+ is expecting (\d+) features?",
        lambda m: {"shapes": _shapes(m[1], m[2]), "dimension": 1, "operation": "features"},
    ),
    # pandas: "Data must be 1-dimensional, got ndarray of shape (2, 2) instead";
    # scikit-learn: "y should be a 1d array, got an array of shape (4, 2) instead."
    _by_groups(
        r"(?:must be 1-dimensional|should be a 1d array), got (?:an? )?\w+ of shape " + _TUPLE_BODY,
        lambda m: {"shapes": _shapes(m[1]), "operation": "ndim"},
    ),
    # scikit-learn: "Expected 2D array, got 1D array instead", "Found array with dim 3,
    # while dim <= 2 is required"
    _by_groups(
        r"Expected \dD array, got \dD array|Found array with dim \d+",
        lambda m: {"operation": "ndim"},
    ),
    # scikit-learn: "Found array with 0 sample(s) (shape=(0, 2)) while a minimum of 1
    # is required"
    _by_groups(
        r"Found array with \d+ sample\(s\) \(shape=" + _TUPLE_BODY + r"\)",
        lambda m: {"shapes": _shapes(m[1]), "operation": "samples"},
    ),
    # numpy: "Last 2 dimensions of the array must be square"
    _by_groups(r"dimensions of the array must be square", lambda m: {"operation": "linalg"}),
    *EXTRA_SHAPE_RULES,
]


def _operation_from(message: str) -> str | None:
    lowered = message.lower()
    if (
        "matmul" in lowered
        or "cannot be multiplied" in lowered
        or "not aligned" in lowered
        or "mat1 and mat2" in lowered
        or "@" in message
    ):
        return "matmul"
    if "expanded size" in lowered:
        return "expand"
    if "broadcast" in lowered:
        return "broadcast"
    if "reshape" in lowered or "view" in lowered:
        return "reshape"
    return None


# Ranges and positions, not operand shapes: torch "start (3) + length (4) exceeds
# dimension size (5)."
_NOT_SHAPES = re.compile(r"exceeds dimension size")


def parse_shapes(message: str) -> Context | None:
    if _NOT_SHAPES.search(message):
        return None
    m = _SHAPE_X.search(message)
    if m and ("multipl" in message or "shape" in message):
        return {
            "shapes": _shapes(m.group(1), m.group(2)),
            "operation": _operation_from(message) or "matmul",
        }
    for pattern, build in _SHAPE_RULES:
        m = pattern.search(message)
        if m:
            return build(m)
    m = _SIZE_OF_TENSOR.search(message)
    if m:
        sizes = _EXPAND_SIZES.search(message)
        if sizes:
            shapes = _shapes(sizes.group(1), sizes.group(2))
        else:
            shapes = _shapes(m.group(1), m.group(2))
        return {
            "shapes": shapes,
            "dimension": int(m.group(3)),
            "operation": "expand" if "expanded size" in message else "broadcast",
        }
    m = _NUMPY_CORE_DIM.search(message)
    if m:
        # "(size 2 is different from 4)": operand 1 has 2 where operand 0 implies 4.
        return {
            "shapes": [[int(m.group(3))], [int(m.group(2))]],
            "dimension": int(m.group(1)),
            "operation": "matmul" if "matmul" in message else _operation_from(message),
        }
    m = _TORCH_RESHAPE.search(message)
    if m:
        return {"shapes": [[int(m.group(2))], _ints(m.group(1))], "operation": "reshape"}
    m = _NUMPY_RESHAPE.search(message)
    if m:
        target = _ints(m.group(2).replace("newaxis", "-1"))
        return {"shapes": [[int(m.group(1))], target], "operation": "reshape"}
    sizes_found = [_ints(s) for s in _TORCH_SIZE.findall(message)]
    if len(sizes_found) >= 2:
        return {"shapes": sizes_found[:8], "operation": _operation_from(message)}
    if _SHAPE_WORDS.search(message):
        tuples = [_ints(t) for t in _TUPLE.findall(message)]
        if len(tuples) >= 2:
            return {"shapes": tuples[:8], "operation": _operation_from(message)}
    return None
