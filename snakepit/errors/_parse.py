"""Read shapes, dtypes, devices and memory figures out of error messages.

Every pattern here matches a message format that NumPy, PyTorch, pandas,
scikit-learn, PyArrow, JAX/XLA or CuPy really produce (the corpus in
``tests/errors/test_corpus.py`` raises them); nothing imports those libraries:
the exception type is known only by its name and module.

The result is a plain, JSON-safe dict (see :func:`parse_context`), so the
worker can send it and the supervisor can trust nothing but its types.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["parse_context"]

# Library messages are short and name their shapes early; bounding the text
# keeps every pattern cheap on a pathological multi-megabyte message.
_PARSE_CHARS = 8000

Context = dict[str, object]

# ------------------------------------------------------------------ numbers


_UNITS: dict[str, int] = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "pib": 1 << 50,
    "eib": 1 << 60,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "eb": 10**18,
}

# "2.00 GiB", "16.00GiB", "1,024 bytes", "35184372088832 bytes"
_SIZE = r"(\d[\d,]*(?:\.\d+)?)\s*([KMGTPE]i?B|bytes?|B)\b"


def _to_bytes(number: str, unit: str) -> int | None:
    factor = _UNITS.get(unit.lower())
    if factor is None:
        return None
    try:
        return round(float(number.replace(",", "")) * factor)
    except ValueError:
        return None


def _ints(text: str) -> list[int]:
    return [int(part) for part in re.findall(r"-?\d+", text)]


# ------------------------------------------------------------------- dtypes

_DTYPE_ALIASES: dict[str, str] = {
    # PyTorch scalar-type names and the C++ type names its kernels print
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "bfloat16": "bfloat16",
    "long": "int64",
    "long int": "int64",
    "long long": "int64",
    "long long int": "int64",
    "int": "int32",
    "short": "int16",
    "short int": "int16",
    "char": "int8",
    "signed char": "int8",
    "byte": "uint8",
    "unsigned char": "uint8",
    "bool": "bool",
    "boolean": "bool",
    "complexfloat": "complex64",
    "complexdouble": "complex128",
    "complexhalf": "complex32",
    "cfloat": "complex64",
    "cdouble": "complex128",
    # pandas / Python
    "str": "str",
    "object": "object",
}

# NumPy type strings: '<f8', '|b1', '<U1', '|S3', '<M8[ns]'
_NUMPY_TYPESTR = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)")
_NUMPY_KINDS: dict[str, str] = {
    "f": "float",
    "i": "int",
    "u": "uint",
    "c": "complex",
    "b": "bool",
    "U": "str",
    "S": "bytes",
    "O": "object",
    "M": "datetime64",
    "m": "timedelta64",
}
_SIZED_KINDS = frozenset({"float", "int", "uint", "complex"})


def _normalize_dtype(name: str) -> str:
    """Canonical dtype name: ``Float``/``torch.FloatTensor``/``'<f4'`` → ``float32``."""
    raw = name.strip().strip("'\"").strip()
    for prefix in ("c10::", "torch.", "cuda.", "numpy.dtypes.", "numpy.", "np."):
        raw = raw.removeprefix(prefix)
    if raw.startswith("dtype(") and raw.endswith(")"):
        raw = raw[len("dtype(") : -1].strip("'\"")
    if raw.endswith("DType") and raw != "DType":
        raw = raw[: -len("DType")]
    if raw.endswith("Tensor") and raw != "Tensor":
        raw = raw[: -len("Tensor")]
    lowered = raw.lower()
    if lowered in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[lowered]
    m = _NUMPY_TYPESTR.match(raw)
    if m is not None and (m.end() == len(raw) or raw[m.end() :].startswith("[")):
        base = _NUMPY_KINDS.get(m.group(1))
        if base in _SIZED_KINDS:
            if m.group(2):
                return f"{base}{int(m.group(2)) * 8}"
        elif base is not None:
            return base
    return lowered


def _dtype(value: str | None) -> str | None:
    return None if value is None else _normalize_dtype(value)


# A C++ or PyTorch type name: "float", "long int", "c10::Half", "unsigned char"
_CTYPE = r"((?:(?:unsigned|signed|long|short) )*[\w:]+)"

# (pattern, order): order says which group is expected and which got;
# "named" keeps the order of the message for symmetric clashes; "python" is
# expected/got with Python type names, kept as they are ("int" is not int32).
_DTYPE_PAIRS: list[tuple[re.Pattern[str], str]] = [
    # torch: "expected scalar type Float but found Double"
    (re.compile(r"expected scalar type (\w+) but found (\w+)"), "expected_got"),
    # torch < 1.5: "Expected object of scalar type Float but got scalar type Double"
    (re.compile(r"Expected object of scalar type (\w+) but got scalar type (\w+)"), "expected_got"),
    # torch: "expected m1 and m2 to have the same dtype, but got: long int != float",
    # "mat1 and mat2 must have the same dtype, but got Half and Float",
    # "dot : expected both vectors to have same dtype, but found Long and Float"
    (re.compile(r"same dtype,? but (?:got|found):? " + _CTYPE + r" (?:!=|and) " + _CTYPE), "named"),
    # torch: "result type Float can't be cast to the desired output type Long"
    (
        re.compile(r"result type (\w+) can't be cast to the desired output type (\w+)"),
        "got_expected",
    ),
    # torch: "Input type (double) and bias type (float) should be the same"
    (
        re.compile(r"Input type \(([\w.: ]+?)\) and (?:weight|bias) type \(([\w.: ]+?)\)"),
        "got_expected",
    ),
    # torch: "expected target dtype to be Long or Byte, but got Float"
    (re.compile(r"expected (?:\w+ )?dtype to be (\w+)(?: or \w+)*, but got (\w+)"), "expected_got"),
    # torch: "expected dtype float for `end` but got dtype double"
    (re.compile(r"expected dtype (\w+) for `?\w+`? but got dtype (\w+)"), "expected_got"),
    # torch: "masked_fill_ only supports boolean masks, but got mask with dtype long int"
    (re.compile(r"(boolean) masks?, but got mask with dtype " + _CTYPE), "expected_got"),
    # torch: "Expected tensor for argument #1 'indices' to have one of the following
    # scalar types: Long, Int; but got torch.FloatTensor instead"
    (
        re.compile(r"one of the following scalar types: (\w+)[^;]*; but got (\S+) instead"),
        "expected_got",
    ),
    # pandas: "You are trying to merge on int64 and str columns for key 'k'"
    (re.compile(r"merge on (\S+) and (\S+) columns"), "named"),
    # pandas: "operation 'radd' not supported for dtype 'str' with dtype 'int64'"
    (re.compile(r"not supported for dtype '([^']+)' with dtype '([^']+)'"), "named"),
    # pyarrow: "Could not convert 'a' with type str: tried to convert to int64"
    (re.compile(r"with type (\w+): tried to convert to (\w+)"), "got_expected"),
    # pyarrow: "Unsupported cast from int64 to list using function cast_list"
    (re.compile(r"Unsupported cast from (\S+) to (\S+?)(?: using function|$)"), "got_expected"),
    # pyarrow: "arrays to be concatenated must be identically typed, but int64 and
    # string were encountered."
    (re.compile(r"identically typed, but (\S+) and (\S+) were encountered"), "named"),
    # pyarrow: "Expected bytes, got a 'int' object"
    (re.compile(r"Expected (\w+), got a '(\w+)' object"), "python"),
    # scikit-learn: "dtype='numeric' is not compatible with arrays of bytes/strings"
    (re.compile(r"dtype='(\w+)' is not compatible with arrays of bytes/(str)ings"), "expected_got"),
]

# numpy: "Cannot cast ufunc 'add' output from dtype('float64') to dtype('int64') ..."
_NUMPY_UFUNC_CAST = re.compile(
    r"Cannot cast ufunc '(\w+)' (?:output|input \d*\s*)\s*from dtype\('([^']+)'\) "
    r"to dtype\('([^']+)'\)"
)
# numpy: "Cannot cast array data from dtype('int64') to dtype('int8') according to ..."
_NUMPY_CAST = re.compile(
    r"Cannot cast (?:array data|scalar) from dtype\('([^']+)'\) to dtype\('([^']+)'\)"
)
# numpy: "ufunc 'add' did not contain a loop with signature matching types
# (dtype('int64'), dtype('<U1')) -> None" (older: <class 'numpy.dtypes.Int64DType'>)
_NUMPY_NO_LOOP = re.compile(r"ufunc '(\w+)' did not contain a loop with signature matching types")
_NUMPY_LOOP_TYPES = re.compile(r"dtype\('([^']+)'\)|numpy\.dtypes\.(\w+DType)")
# numpy: "ufunc 'sqrt' not supported for the input types, and the inputs could not
# be safely coerced ..."
_NUMPY_UNSUPPORTED = re.compile(r"ufunc '(\w+)' not supported for the input types")
# numpy: "data type 'float99' not understood"
_NUMPY_UNKNOWN_DTYPE = re.compile(r"data type '([^']+)' not understood")
# pyarrow: "Function 'add' has no kernel matching input types (int64, string)"
_ARROW_KERNEL = re.compile(r"Function '(\w+)' has no kernel matching input types \(([^)]*)\)")
# torch: "index_select(): Expected dtype int32 or int64 for index"
_TORCH_INDEX_DTYPE = re.compile(r"Expected dtype (\w+)(?: or (\w+))? for (?:index|indices)")
# torch: "mean(): could not infer output dtype. Input dtype must be either a
# floating point or complex dtype. Got: Long"
_TORCH_INFER_DTYPE = re.compile(r"could not infer output dtype\..*?Got: (\w+)")
_DTYPE_NO_NAMES = re.compile(
    # pyarrow: "Array chunks must all be same type"
    r"chunks must all be same type"
)


def _parse_dtypes(message: str) -> Context | None:
    m = _NUMPY_UFUNC_CAST.search(message)
    if m:
        return {"dtypes": [_dtype(m.group(3)), _dtype(m.group(2))], "operation": m.group(1)}
    m = _NUMPY_CAST.search(message)
    if m:
        return {"dtypes": [_dtype(m.group(2)), _dtype(m.group(1))], "operation": "cast"}
    m = _NUMPY_NO_LOOP.search(message)
    if m:
        names = [a or b for a, b in _NUMPY_LOOP_TYPES.findall(message[m.end() :])][:2]
        dtypes = [_normalize_dtype(n) for n in names] + [None] * (2 - len(names))
        return {"dtypes": dtypes, "operation": m.group(1)}
    m = _NUMPY_UNSUPPORTED.search(message)
    if m:
        return {"dtypes": [None, None], "operation": m.group(1)}
    m = _ARROW_KERNEL.search(message)
    if m:
        names = [n.strip() for n in m.group(2).split(",") if n.strip()][:2]
        dtypes = [_normalize_dtype(n) for n in names] + [None] * (2 - len(names))
        return {"dtypes": dtypes, "operation": m.group(1)}
    m = _TORCH_INDEX_DTYPE.search(message)
    if m:
        return {"dtypes": [_dtype(m.group(2) or m.group(1)), None], "operation": "index"}
    m = _TORCH_INFER_DTYPE.search(message)
    if m:
        return {"dtypes": [None, _dtype(m.group(1))]}
    for pattern, order in _DTYPE_PAIRS:
        m = pattern.search(message)
        if m:
            first, second = m.group(1), m.group(2)
            if order == "python":
                return {"dtypes": [first, second]}
            expected, got = (second, first) if order == "got_expected" else (first, second)
            return {"dtypes": [_dtype(expected), _dtype(got)]}
    m = _NUMPY_UNKNOWN_DTYPE.search(message)
    if m:
        return {"dtypes": [None, m.group(1)]}
    if _DTYPE_NO_NAMES.search(message):
        return {"dtypes": [None, None]}
    return None


# ------------------------------------------------------------------ devices

_DEVICE = r"([a-z]+(?::\d+)?)"
_DEVICE_PAIRS: list[re.Pattern[str]] = [
    # torch: "Expected all tensors to be on the same device, but found at least two
    # devices, cuda:0 and cpu! (when checking argument for argument mat2 in method ...)"
    re.compile(r"found at least two devices, " + _DEVICE + r" and " + _DEVICE),
    # torch >= 2.6: "... but got mat2 is on cpu, different from other tensors on cuda:0"
    re.compile(r"is on " + _DEVICE + r", different from other tensors on " + _DEVICE),
    # torch (TensorIterator): "Tensor on device cpu is not on the expected device meta!"
    re.compile(r"Tensor on device " + _DEVICE + r" is not on the expected device " + _DEVICE),
    # torch (MPS): "Expected all tensors to be on the same device. Found: cpu, mps:0"
    re.compile(r"same device\. Found: " + _DEVICE + r", " + _DEVICE),
]
# torch < 1.9: "... to have the same device as tensor for argument #2 'weight'; but
# device 1 does not equal 0"
_DEVICE_INDICES = re.compile(r"same device as tensor .*?but device (\d+) does not equal (\d+)")
# torch: "Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor)
# should be the same"
_TENSOR_TYPE_DEVICES = re.compile(
    r"Input type \(([\w.:]+)\) and (?:weight|bias) type \(([\w.:]+)\) should be the same"
)

# (pattern, device) for "the device does not exist / cannot be used here"
_DEVICE_UNAVAILABLE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Torch not compiled with CUDA enabled"), "cuda"),
    (re.compile(r"No CUDA GPUs are available"), "cuda"),
    (re.compile(r"Found no NVIDIA driver on your system"), "cuda"),
    (re.compile(r"no CUDA-capable device is detected"), "cuda"),
    (re.compile(r"CUDA driver initialization failed"), "cuda"),
    (re.compile(r"invalid device ordinal"), "cuda"),
    (re.compile(r"MPS backend is not available|MPS backend is supported on MacOS"), "mps"),
    # JAX: "Unknown backend: 'gpu' requested, but no platforms that are instances of
    # gpu are present." / "Backend 'gpu' failed to initialize"
    (re.compile(r"Unknown backend:? '?(\w+)'? requested"), ""),
    (re.compile(r"Backend '(\w+)' failed to initialize"), ""),
]
_DEVICE_IN_TEXT = re.compile(r"\b(cuda:\d+)\b")


def _tensor_type_device(type_name: str) -> str:
    return "cuda" if ".cuda." in type_name or type_name.startswith("cuda") else "cpu"


def _parse_devices(message: str) -> list[str] | None:
    for pattern in _DEVICE_PAIRS:
        m = pattern.search(message)
        if m:
            return [m.group(1), m.group(2)]
    m = _DEVICE_INDICES.search(message)
    if m:
        return [f"cuda:{m.group(1)}", f"cuda:{m.group(2)}"]
    m = _TENSOR_TYPE_DEVICES.search(message)
    if m:
        first, second = _tensor_type_device(m.group(1)), _tensor_type_device(m.group(2))
        if first != second:
            return [first, second]
    return None


def _parse_unavailable(message: str) -> str | None:
    for pattern, device in _DEVICE_UNAVAILABLE:
        m = pattern.search(message)
        if m:
            if not device:
                return m.group(1)
            named = _DEVICE_IN_TEXT.search(message)
            return named.group(1) if named and device == "cuda" else device
    return None


# ------------------------------------------------------------------- shapes

_LIST = r"\[([-\d,\s]*)\]"
_TUPLE_BODY = r"\(([\d,\s]*)\)"

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


def _parse_shapes(message: str) -> Context | None:
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


# ---------------------------------------------------------------------- OOM

_OOM_TYPES = frozenset({"MemoryError", "OutOfMemoryError", "_ArrayMemoryError", "ArrowMemoryError"})
_OOM_WORDS = re.compile(
    r"out of memory|unable to allocate|not enough memory|failed to allocate|"
    r"cannot allocate memory|can't allocate memory|std::bad_alloc|malloc of size \d+ failed|"
    r"RESOURCE_EXHAUSTED:.{0,80}(?:memory|allocat)",
    re.IGNORECASE,
)
_OOM_REQUESTED = [
    # torch: "Tried to allocate 2.00 GiB"; numpy: "Unable to allocate 8.00 PiB";
    # torch CPU: "you tried to allocate 1152921504606846976 bytes";
    # XLA: "Out of memory while trying to allocate 17179869184 bytes."
    re.compile(r"(?:tried|trying|unable|failed) to allocate " + _SIZE, re.IGNORECASE),
    # CuPy: "Out of memory allocating 1,024 bytes"
    re.compile(r"out of memory allocating " + _SIZE, re.IGNORECASE),
    # pyarrow: "malloc of size 4611686018427387904 failed"
    re.compile(r"malloc of size (\d+)() failed"),
]
_OOM_TOTAL = [
    # torch >= 2.1: "GPU 0 has a total capacity of 79.15 GiB" (2.1 spelt "capacty")
    re.compile(r"total capac(?:i)?ty of " + _SIZE),
    # torch < 2.1: "(GPU 0; 15.78 GiB total capacity; ..."
    re.compile(_SIZE + r" total capacity"),
    # torch MPS: "max allowed: 18.13 GB"
    re.compile(r"max allowed: " + _SIZE),
    # CuPy: "limit set to: 1,073,741,824 bytes"
    re.compile(r"limit set to: " + _SIZE),
]
_OOM_FREE = [
    re.compile(r"of which " + _SIZE + r" is free"),
    re.compile(_SIZE + r" free\b"),
    # XLA TPU: "There are 6.43M free."
    re.compile(r"There are " + _SIZE + r" free"),
]
_OOM_ALLOCATED = [
    re.compile(_SIZE + r" already allocated"),
    re.compile(r"Of the allocated memory " + _SIZE + r" is allocated by PyTorch"),
    re.compile(r"allocated so far: " + _SIZE),
]
_GPU_INDEX = re.compile(r"\(GPU (\d+);|\bGPU (\d+) has\b")
_MPS = re.compile(r"\bmps\b")
_FRAMEWORK_ROOTS: dict[str, str] = {
    "torch": "torch",
    "jax": "jax",
    "jaxlib": "jax",
    "cupy": "cupy",
    "cupy_backends": "cupy",
    "numpy": "numpy",
    "pyarrow": "pyarrow",
    "tensorflow": "tensorflow",
}


def _first_size(patterns: list[re.Pattern[str]], message: str) -> int | None:
    for pattern in patterns:
        m = pattern.search(message)
        if m:
            return _to_bytes(m.group(1), m.group(2) or "bytes")
    return None


def _framework(message: str, qualified_type: str | None) -> str | None:
    root = (qualified_type or "").split(".", 1)[0]
    if root in _FRAMEWORK_ROOTS:
        return _FRAMEWORK_ROOTS[root]
    if "PyTorch" in message or "PYTORCH" in message or "DefaultCPUAllocator" in message:
        return "torch"
    if "out of memory. Tried to allocate" in message:  # torch caching allocators
        return "torch"
    if "RESOURCE_EXHAUSTED" in message or "XLA" in message:
        return "jax"
    if "for an array with shape" in message:
        return "numpy"
    if "malloc of size" in message:
        return "pyarrow"
    return None


def _is_oom(
    message: str, python_type: str | None, qualified_type: str | None, builtin_type: str | None
) -> bool:
    return (
        python_type in _OOM_TYPES
        or builtin_type == "MemoryError"
        or "OutOfMemory" in (qualified_type or "")
        or bool(_OOM_WORDS.search(message))
    )


def _oom_device(message: str, framework: str | None, cpu_type: bool) -> str | None:
    lowered = message.lower()
    m = _GPU_INDEX.search(message)
    kind = "xpu" if lowered.startswith("xpu") else "cuda"
    if m:
        return f"{kind}:{m.group(1) or m.group(2)}"
    if lowered.startswith("xpu"):
        return "xpu"
    if _MPS.search(lowered):
        return "mps"
    if "cuda" in lowered or "hip " in lowered or framework == "cupy":
        return "cuda"
    if "gpu" in lowered or framework == "jax":
        return "gpu"
    if cpu_type or "cpu" in lowered or framework in {"numpy", "pyarrow"}:
        return "cpu"
    return None


def _parse_oom(
    message: str, python_type: str | None, qualified_type: str | None, builtin_type: str | None
) -> Context:
    framework = _framework(message, qualified_type)
    cpu_type = python_type in {"MemoryError", "_ArrayMemoryError", "ArrowMemoryError"} or (
        builtin_type == "MemoryError" and framework not in {"cupy", "jax", "torch"}
    )
    memory: Context = {}
    device = _oom_device(message, framework, cpu_type)
    if device is not None:
        memory["device"] = device
    if framework is not None:
        memory["framework"] = framework
    for key, patterns in (
        ("requested", _OOM_REQUESTED),
        ("total", _OOM_TOTAL),
        ("free", _OOM_FREE),
        ("allocated", _OOM_ALLOCATED),
    ):
        value = _first_size(patterns, message)
        if value is not None:
            memory[key] = value
    return memory


# ------------------------------------------------------------------ context


def parse_context(
    message: str,
    python_type: str | None = None,
    *,
    qualified_type: str | None = None,
    builtin_type: str | None = None,
) -> dict[str, object]:
    """Parse shapes, dtypes, devices and OOM figures out of an error message.

    Args:
        message: The exception's message.
        python_type: Short name of its type (``RuntimeError``, ``_ArrayMemoryError``).
        qualified_type: ``module.Qual`` of its type; its top-level package
            (``torch``, ``cupy``, ``jaxlib``...) tells libraries apart.
        builtin_type: Its nearest built-in base (``MemoryError`` for CuPy's and
            PyArrow's out-of-memory errors).

    Returns:
        A JSON-safe dict. ``category`` says what the message is about when it
        is recognised: ``oom`` (with ``memory``: ``device``, ``framework``,
        ``requested``, ``free``, ``total``, ``allocated``, in bytes, as far as
        the message names them), ``device_unavailable`` (``device``),
        ``device`` (``devices``: the mismatched devices in message order),
        ``dtype`` (``dtypes``: ``[expected, got]``, either may be ``None``;
        ``operation``) or ``shape`` (``shapes``: every operand shape named, in
        message order; ``dimension``; ``operation``). Unrecognised messages
        give an empty dict. Never raises for any ``str``.
    """
    text = message[:_PARSE_CHARS]
    context: Context = {}
    if _is_oom(text, python_type, qualified_type, builtin_type):
        context["category"] = "oom"
        context["memory"] = _parse_oom(text, python_type, qualified_type, builtin_type)
        return context
    unavailable = _parse_unavailable(text)
    if unavailable:
        context["category"] = "device_unavailable"
        context["device"] = unavailable
        return context
    devices = _parse_devices(text)
    if devices:
        context["category"] = "device"
        context["devices"] = devices
        return context
    dtypes = _parse_dtypes(text)
    if dtypes:
        context["category"] = "dtype"
        context.update({k: v for k, v in dtypes.items() if v is not None})
        return context
    shapes = _parse_shapes(text)
    if shapes:
        context["category"] = "shape"
        context.update({k: v for k, v in shapes.items() if v is not None})
    return context
