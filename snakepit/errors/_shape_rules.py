"""Shape-message formats beyond the core ones: layers, indexing, SciPy, TensorFlow/Keras, JAX.

Part of :func:`snakepit.errors._parse_shapes.parse_shapes`, which tries these
after its own specific formats and before its generic fallbacks. Every
pattern matches a format the library really produces (the corpus in
``tests/errors/corpus/`` raises or rebuilds them, citing the source of the
rebuilt ones).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["EXTRA_SHAPE_RULES"]

Context = dict[str, object]
Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], Context]]

_LIST = r"\[([-\d,\s]*)\]"
_TUPLE_BODY = r"\(([\d,\s]*)\)"
# A Python tuple that may hold None (Keras prints unknown batch sizes so)
_LOOSE_TUPLE = r"\(((?:\s*(?:\d+|None)\s*,?)*)\)"
_ANY_TUPLE = re.compile(r"\((\s*\d+\s*(?:,\s*\d+\s*)*,?\s*)\)")


def _ints(text: str) -> list[int]:
    return [int(part) for part in re.findall(r"-?\d+", text)]


def _sizes(*groups: str) -> list[list[int]]:
    return [_ints(g) for g in groups]


def _rule(pattern: str, build: Callable[[re.Match[str]], Context], flags: int = 0) -> Rule:
    return re.compile(pattern, flags), build


def _tf_graph(m: re.Match[str]) -> Context:
    node = m[3]
    operation = (
        "matmul"
        if "MatMul" in node
        else "broadcast"
        if re.search(r"= (?:AddV2|Add|Sub|Mul|RealDiv|Maximum|Minimum|Pow)\b", node)
        else None
    )
    return {"shapes": _sizes(m[4], m[5]), "operation": operation}


def _keras_axis(m: re.Match[str]) -> Context:
    axis, value = int(m[1]), int(m[2])
    received = [None if d.strip() == "None" else int(d) for d in m[3].split(",") if d.strip()]
    got = received[axis] if -len(received) <= axis < len(received) else None
    shapes = [[got], [value]] if isinstance(got, int) else [[value]]
    return {"shapes": shapes, "dimension": axis, "operation": "features"}


def _known(text: str) -> list[int]:
    """A Keras shape without its unknown (``None``) dimensions."""
    return [int(d) for d in text.split(",") if d.strip() and d.strip() != "None"]


def _square(m: re.Match[str]) -> Context:
    rest = m.string[m.end() : m.end() + 80]
    by = re.match(r".{0,30}?(\d+) by (\d+) matri", rest)
    if by:
        return {"shapes": [[int(by[1]), int(by[2])]], "operation": "linalg"}
    shape = _ANY_TUPLE.search(rest)
    if shape:
        return {"shapes": [_ints(shape[1])], "operation": "linalg"}
    return {"operation": "linalg"}


EXTRA_SHAPE_RULES: list[Rule] = [
    # JAX (lax.py): "dot_general requires contracting dimensions to have the same shape,
    # got (4,) and (2,)."
    _rule(
        r"dot_general requires contracting dimensions to have the same shape, got "
        + _TUPLE_BODY
        + r" and "
        + _TUPLE_BODY,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "matmul"},
    ),
    # JAX (lax.py): "Cannot concatenate arrays with shapes that differ in dimensions other
    # than the one being concatenated: concatenating along dimension 0 for shapes (3, 4),
    # (3, 5)."
    _rule(
        r"concatenating along dimension (\d+) for shapes ((?:\([\d,\s]*\),?\s*)+)",
        lambda m: {
            "shapes": [_ints(t) for t in re.findall(r"\(([\d,\s]*)\)", m[2])][:8],
            "operation": "concatenate",
        },
    ),
    # scipy.ndimage: "weights.ndim (1) must match len(axes) (2)": counts, not shapes
    _rule(r"\.ndim \(\d+\) must match", lambda m: {"operation": "ndim"}),
    # torch (pooling): "Given input size: (1x3x3). Calculated output size: (1x0x0). Output
    # size is too small"
    _rule(
        r"Given input size: \(([\dx]+)\)\. Calculated output size: \(([\dx]+)\)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "pool"},
    ),
    # torch (conv): "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input
    # of size: [1, 1, 3, 8, 8]"
    _rule(
        r"input to \w+, but got input of size: " + _LIST,
        lambda m: {"shapes": _sizes(m[1]), "operation": "ndim"},
    ),
    # torch: "shape mismatch: value tensor of shape [3, 4] cannot be broadcast to indexing
    # result of shape [2, 4]"
    _rule(
        r"value tensor of shape "
        + _LIST
        + r" cannot be broadcast to indexing result of shape "
        + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "broadcast"},
    ),
    # torch: "split_with_sizes expects split_sizes to sum exactly to 5 (input tensor's size
    # at dimension 0), but got split_sizes=[2, 2]"
    _rule(
        r"split_sizes to sum exactly to (\d+) \(input tensor's size at dimension (\d+)\), but "
        r"got split_sizes=" + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[3]), "dimension": int(m[2]), "operation": "split"},
    ),
    # torch (meta kernels): "Attempting to broadcast a dimension of length 4 at -1!
    # Mismatching argument at index 1 had torch.Size([4]); but expected shape should be
    # broadcastable to [3]" (kept in operand order: the broadcast target, then argument 1)
    _rule(
        r"Mismatching argument at index \d+ had torch\.Size\(" + _LIST + r"\); but expected "
        r"shape should be broadcastable to " + _LIST,
        lambda m: {"shapes": _sizes(m[2], m[1]), "operation": "broadcast"},
    ),
    # scipy.linalg: "Shape mismatch: a and b should have the same number of rows (3 != 4)."
    _rule(
        r"same number of rows \((\d+) != (\d+)\)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": 0, "operation": "length"},
    ),
    # scipy.sparse.linalg: "matrix - rhs dimension mismatch ((3, 3) - 4)"
    _rule(
        r"matrix - rhs dimension mismatch \(" + _TUPLE_BODY + r" - (\d+)\)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "solve"},
    ),
    # scikit-learn (trees): "Number of labels=4 does not match number of samples=5"
    # (kept as [X's, y's] like "inconsistent numbers of samples")
    _rule(
        r"Number of labels=(\d+) does not match number of samples=(\d+)",
        lambda m: {"shapes": _sizes(m[2], m[1]), "dimension": 0, "operation": "length"},
    ),
    # TensorFlow (kernels/matmul_op.cc, matmul_op_impl.h): "Matrix size-incompatible:
    # In[0]: [3,4], In[1]: [2,2]"
    _rule(
        r"Matrix size-incompatible: In\[0\]: " + _LIST + r", In\[1\]: " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "matmul"},
    ),
    # TensorFlow (cwise_ops_common.cc): "Incompatible shapes: [3,4] vs. [3,5]"
    _rule(
        r"Incompatible shapes: " + _LIST + r" vs\. " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "broadcast"},
    ),
    # TensorFlow (reshape_op.h): "Input to reshape is a tensor with 12 values, but the
    # requested shape has 10" / "... requires a multiple of 5"
    _rule(
        r"Input to reshape is a tensor with (\d+) (?:dense )?values, but the requested shape "
        r"(?:has|requires a multiple of) (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "reshape"},
    ),
    # TensorFlow (concat_op.cc): "Dimensions of inputs should match: shape[0] = [3,4] vs.
    # shape[1] = [3,5]"
    _rule(
        r"Dimensions of inputs should match: shape\[\d+\] = "
        + _LIST
        + r" vs\. shape\[\d+\] = "
        + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "concatenate"},
    ),
    # TensorFlow graph mode: "Dimensions must be equal, but are 4 and 2 for '{{node
    # MatMul}} = MatMul[...](a, b)' with input shapes: [3,4], [2,2]."
    _rule(
        r"Dimensions must be equal, but are (\d+) and (\d+) for '(.*?)' with input shapes: "
        + _LIST
        + r", "
        + _LIST,
        _tf_graph,
        re.DOTALL,
    ),
    # Keras (layers/input_spec.py): "expected axis -1 of input shape to have value 4, but
    # received input with shape (3, 5)" (kept as [input's, expected])
    _rule(
        r"expected axis (-?\d+) of input shape to have value (\d+),? but received input with "
        r"shape " + _LOOSE_TUPLE,
        _keras_axis,
    ),
    # Keras: "expected min_ndim=4, found ndim=3. Full shape received: (28, 28, 1)"
    _rule(
        r"expected (?:min_|max_)?ndim=\d+, found ndim=\d+\. Full (?:input )?shape received: "
        + _LOOSE_TUPLE,
        lambda m: {"shapes": [_known(m[1])], "operation": "ndim"},
    ),
    # Keras (backend nn.py): "Arguments `target` and `output` must have the same shape.
    # Received: target.shape=(None, 1), output.shape=(None, 10)"
    _rule(
        r"target\.shape=" + _LOOSE_TUPLE + r", output\.shape=" + _LOOSE_TUPLE,
        lambda m: {"shapes": [_known(m[1]), _known(m[2])]},
    ),
    # JAX (lax.py): "mul got arrays of different rank: (2, 3), (4,)."
    _rule(
        r"got arrays of different rank: ((?:\([\d,\s]*\),?\s*)+)",
        lambda m: {"shapes": [_ints(t) for t in re.findall(r"\(([\d,\s]*)\)", m[1])][:8]},
    ),
    # JAX (convolution.py): "... must equal the rhs input feature dimension size, but
    # 4 // 1 != 3."
    _rule(
        r"feature dimension size, but (\d+) // \d+ != (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "conv"},
    ),
    # torch: "output with shape [3, 1] doesn't match the broadcast shape [3, 4]"
    _rule(
        r"output with shape " + _LIST + r" doesn't match the broadcast shape " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "broadcast"},
    ),
    # numpy: "non-broadcastable output operand with shape (3,) doesn't match the
    # broadcast shape (2,3)"
    _rule(
        r"output operand with shape "
        + _TUPLE_BODY
        + r" doesn't match the broadcast shape "
        + _TUPLE_BODY,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "broadcast"},
    ),
    # torch: "The shape of the mask [2] at index 0 does not match the shape of the indexed
    # tensor [3, 4] at index 0"
    _rule(
        r"shape of the mask " + _LIST + r" at index (\d+) does not match the shape of the "
        r"indexed tensor " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[3]), "dimension": int(m[2]), "operation": "index"},
    ),
    # numpy: "boolean index did not match indexed array along axis 0; size of axis is 3
    # but size of corresponding boolean axis is 2"
    _rule(
        r"along (?:axis|dimension) (\d+); size of axis is (\d+) but size of corresponding "
        r"boolean axis is (\d+)",
        lambda m: {"shapes": _sizes(m[2], m[3]), "dimension": int(m[1]), "operation": "index"},
    ),
    # torch: "Got self.shape = [5, 3] source.shape = [2, 4]"
    _rule(
        r"self\.shape = " + _LIST + r",? source\.shape = " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "index"},
    ),
    # torch: "a and b must have same reduction dim, but got [3, 4] X [2, 2]."
    _rule(
        r"same reduction dim, but got " + _LIST + r" X " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "matmul"},
    ),
    # torch: "contracted dimensions need to match, but first has size 4 in dim 1 and
    # second has size 5 in dim 0"
    _rule(
        r"first has size (\d+) in dim \d+ and second has size (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "matmul"},
    ),
    # torch: "einsum(): subscript j has size 5 for operand 1 which does not broadcast with
    # previously seen size 4"
    _rule(
        r"subscript \w+ has size (\d+) for operand \d+ which does not broadcast with "
        r"previously seen size (\d+)",
        lambda m: {"shapes": _sizes(m[2], m[1]), "operation": "einsum"},
    ),
    # torch: "X1 and X2 must have the same number of columns. X1: 4 X2: 6"
    _rule(
        r"X1: (\d+) X2: (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": -1, "operation": "features"},
    ),
    # torch: "attempting to assign a gradient of size '[4]' to a tensor of size '[3]'"
    _rule(
        r"gradient of size '" + _LIST + r"' to a tensor of size '" + _LIST + r"'",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "grad"},
    ),
    # torch (autograd): "Mismatch in shape: grad_output[0] has a shape of torch.Size([4])
    # and output[0] has a shape of torch.Size([3])" (the torch.Size fallback reads it)
    # torch: "Calculated padded input size per channel: (3 x 3). Kernel size: (5 x 5)."
    _rule(
        r"input size per channel: \(([\d x]+)\)\. Kernel size: \(([\d x]+)\)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "conv"},
    ),
    # torch: "Input and output must have the same number of spatial dimensions, but got
    # input with spatial dimensions of [4, 4] and output size of (2, 2, 2)."
    _rule(
        r"spatial dimensions of " + _LIST + r" and output size of [\[(]([\d,\s]*)[\])]",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "interpolate"},
    ),
    # ... "and scale_factor of shape (2.0, 2.0, 2.0)": the factors are not a shape
    _rule(
        r"spatial dimensions of " + _LIST + r" and scale_factor",
        lambda m: {"shapes": _sizes(m[1]), "operation": "interpolate"},
    ),
    # torch (RNNs): "Expected hidden[0] size (1, 2, 8), got [1, 3, 8]"
    _rule(
        r"Expected hidden(?:\[\d\])? size " + _TUPLE_BODY + r", got " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "hidden"},
    ),
    # torch (RNN cells): "Input batch size 3 doesn't match hidden0 batch size 2"
    _rule(
        r"Input batch size (\d+) doesn't match hidden\d* batch size (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": 0, "operation": "hidden"},
    ),
    # torch (RNN cells): "hidden0 has inconsistent hidden_size: got 7, expected 8",
    # "input has inconsistent input_size: got 5 expected 4"
    _rule(
        r"has inconsistent (input|hidden)_size: got (\d+),? expected (\d+)",
        lambda m: {
            "shapes": _sizes(m[2], m[3]),
            "dimension": -1,
            "operation": "features" if m[1] == "input" else "hidden",
        },
    ),
    # torch: "grid_sampler(): expected grid and input to have same batch size, but got
    # input with sizes [1, 1, 4, 4] and grid with sizes [2, 3, 3, 2]"
    _rule(
        r"input with sizes " + _LIST + r" and grid with sizes " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": 0, "operation": "grid"},
    ),
    # torch (GroupNorm): "... divisible by num_groups, but got input of shape [1, 4, 5]"
    _rule(r"but got input of shape " + _LIST, lambda m: {"shapes": _sizes(m[1])}),
    # torch (bilinear): "input2 size does not match weight size: got 5 but expected 4"
    _rule(
        r"size does not match weight size: got (\d+) but expected (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": -1, "operation": "features"},
    ),
    # torch (MultiheadAttention): "was expecting embedding dimension of 8, but got 6"
    _rule(
        r"expecting embedding dimension of (\d+), but got (\d+)",
        lambda m: {"shapes": _sizes(m[2], m[1]), "dimension": -1, "operation": "features"},
    ),
    # torch: "Expected input batch_size (3) to match target batch_size (4)."
    _rule(
        r"input batch_size \((\d+)\) to match target batch_size \((\d+)\)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": 0, "operation": "length"},
    ),
    # torch: "Expected target size [2, 4], got [2, 3]"
    _rule(
        r"Expected target size " + _LIST + r", got " + _LIST,
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "target"},
    ),
    # scipy.sparse: "matmul: dimension mismatch with signature (n,k=4),(k=2,m)->(n,m)"
    _rule(
        r"dimension mismatch with signature \(\w+\??,k=(\d+)\),\(k=(\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "matmul"},
    ),
    # scipy.sparse: "Mismatching dimensions along axis 0: {2, 3}"
    _rule(
        r"Mismatching dimensions along axis (\d+): \{(\d+), (\d+)\}",
        lambda m: {"shapes": _sizes(m[2], m[3]), "dimension": int(m[1]), "operation": "stack"},
    ),
    # scipy.interpolate: "There are 3 points and 4 values in dimension 0"
    _rule(
        r"There are (\d+) points and (\d+) values in dimension (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": int(m[3]), "operation": "length"},
    ),
    # scipy.spatial: "x must consist of vectors of length 2 but has shape (3,)"
    _rule(
        r"vectors of length \d+ but has shape " + _TUPLE_BODY,
        lambda m: {"shapes": _sizes(m[1]), "dimension": -1, "operation": "features"},
    ),
    # scipy: "Expected square matrix, got a1.shape=(2, 3)", "matrix must be square (has
    # shape (2, 3))"; torch: "A must be batches of square matrices, but they are 2 by 3
    # matrices"
    _rule(r"[Ss]quare (?:\"\w+\" )?matri(?:x|ces)|must be square", _square),
    # pandas: "3 columns passed, passed data had 2 columns"
    _rule(
        r"(\d+) columns passed, passed data had (\d+) columns",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": 1, "operation": "length"},
    ),
    # pandas: "Must pass 2-d input. shape=(2, 2, 2)"
    _rule(
        r"Must pass 2-d input\. shape=" + _TUPLE_BODY,
        lambda m: {"shapes": _sizes(m[1]), "operation": "ndim"},
    ),
    # scikit-learn: "y_true and y_pred have different number of output (2!=3)"
    _rule(
        r"different number of output \((\d+)!=(\d+)\)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "dimension": 1, "operation": "length"},
    ),
    # pyarrow: "Length of item not correct: expected 1 but got array of size 2"
    _rule(
        r"expected (\d+) but got array of size (\d+)",
        lambda m: {"shapes": _sizes(m[1], m[2]), "operation": "length"},
    ),
    # pyarrow: "Length of names (2) does not match length of arrays (1)"
    _rule(
        r"Length of (\w+) \((\d+)\) does not match length of (\w+) \((\d+)\)",
        lambda m: {"shapes": _sizes(m[2], m[4]), "operation": "length"},
    ),
    # Lengths that differ, no sizes named: numpy "fp and xp are not of the same length",
    # "expected x and y to have same length"; scipy "x and y arrays must be equal in
    # length", "doesn't match the length of `x`"; pyarrow "Array arguments must all be the
    # same length", "needs to be a multiple of the list_size"
    _rule(
        r"not of the same length|to have same length|must be equal in length|"
        r"doesn't match the length of|must all be the same length|"
        r"needs to be a multiple of the list_size|unequal length",
        lambda m: {"operation": "length"},
    ),
    # Shapes that do not broadcast, none named: scipy "`x` and `y` must be broadcastable",
    # "Array shapes are incompatible for broadcasting", scipy.sparse "inconsistent shapes";
    # numpy "shape-mismatch for sum"
    _rule(
        r"must be broadcastable|incompatible for broadcasting|inconsistent shapes|"
        r"shape-mismatch for sum|dimension mismatch\b",
        lambda m: {"operation": "broadcast"},
    ),
    # Wrong number of dimensions, no shapes named: numpy "1-dimensional array given. Array
    # must be at least two-dimensional", "`bins` must be 1d"; torch "LSTM: Expected input
    # to be 2D or 3D, got 4D instead", "expected 4D input (got 3D input)", "Got 3D input,
    # but bilinear mode needs 4D input", "number of dimensions in the tensor input does not
    # match the length of the desired ordering", "0D or 1D target tensor expected",
    # "Index tensor must have the same number of dimensions as input tensor", "Number of
    # dimensions of repeat dims can not be smaller", "self must be a matrix"; scipy
    # "in1 and in2 should have the same dimensionality"
    _rule(
        r"must be at least two-dimensional|must be 1d\b|Expected input to be \dD(?: or \dD)?, "
        r"got \dD|expected \dD input \(got \dD input\)|Got \dD input, but \w+ mode needs|"
        r"number of dimensions in the tensor input does not match|target tensor expected|"
        r"same number of dimensions as input|Number of dimensions of repeat dims|"
        r"must be a matrix\b|same dimensionality",
        lambda m: {"operation": "ndim"},
    ),
    # torch: "max_pool1d() Invalid computed output size: 0"; "pixel_shuffle expects its
    # input's 'channel' dimension to be divisible by the square of upscale_factor"; numpy
    # "incompatible dimensions for cross product", "array split does not result in an
    # equal division"; scipy.sparse "incompatible dimensions for axis 1", scipy.optimize
    # "The number of bounds is not compatible with the length of `x0`", scipy.spatial "XA
    # and XB must have the same number of columns"
    _rule(
        r"Invalid computed output size|divisible by the square of upscale_factor|"
        r"incompatible dimensions for (?:cross product|axis \d+)|"
        r"does not result in an equal division|number of bounds is not compatible|"
        r"must have the same number of columns",
        lambda m: {"operation": "size"},
    ),
]
