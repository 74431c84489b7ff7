"""Dtype names out of NumPy, PyTorch, pandas, PyArrow and scikit-learn messages.

Part of :func:`snakepit.errors._parse.parse_context`. Every pattern matches a
message format those libraries really produce (the corpus in
``tests/errors/corpus/`` raises them); names are normalised to NumPy's
canonical spelling (``Float`` -> ``float32``, ``'<f8'`` -> ``float64``).
"""

from __future__ import annotations

import re

__all__ = ["parse_dtypes"]

Context = dict[str, object]

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
    # torch (RNNs): "RNN input dtype (torch.float64) does not match weight dtype
    # (torch.float32)"
    (
        re.compile(r"input dtype \(([\w.]+)\) does not match weight dtype \(([\w.]+)\)"),
        "got_expected",
    ),
    # TensorFlow (eager/execute.cc): "cannot compute AddV2 as input #1(zero-based) was
    # expected to be a float tensor but is a int32 tensor"
    (re.compile(r"was expected to be a (\w+) tensor but is a (\w+) tensor"), "expected_got"),
    # JAX (lax.py): "lax.add requires arguments to have the same dtypes, got float32, int32."
    (re.compile(r"requires arguments to have the same dtypes, got (\w+), (\w+)"), "named"),
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
_TORCH_INDEX_DTYPE = re.compile(r"Expected dtype (\w+)(?:(?: or |/)(\w+))? for (?:index|indices)")
# torch: "mean(): could not infer output dtype. Input dtype must be either a
# floating point or complex dtype. Got: Long"
_TORCH_INFER_DTYPE = re.compile(r"could not infer output dtype\..*?Got: (\w+)")
# Only the offending dtype named: torch '"histogram_cpu" not implemented for 'Long'',
# "linalg.inv: Expected a floating point or complex tensor as input. Got Long",
# "Negation, the `-` operator, on a bool tensor is not supported"
_DTYPE_GOT_ONLY = re.compile(
    r"\" not implemented for '(\w+)'|"
    r"Expected a floating point (?:or complex )?tensor as input\. Got (\w+)|"
    r"on a (bool) tensor is not supported|"
    # scipy.sparse: "scipy.sparse does not support dtype object. The only supported ..."
    r"does not support dtype (\w+)"
)
# pyarrow: "Schema at index 1 was different: \na: int64\nvs\na: string" (the same
# field with two types; different field names are not a dtype clash)
_ARROW_SCHEMA = re.compile(r"Schema at index \d+ was different:\s*(\w+): (\S+)\s+vs\s+\1: (\S+)")
_DTYPE_NO_NAMES = re.compile(
    # pyarrow: "Array chunks must all be same type"
    r"chunks must all be same type"
)


def parse_dtypes(message: str) -> Context | None:
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
        dtypes = [_normalize_dtype(n) for n in names]
        # one input type is the one that has no kernel: what the call got
        dtypes = [None, dtypes[0]] if len(dtypes) == 1 else dtypes + [None] * (2 - len(dtypes))
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
    m = _DTYPE_GOT_ONLY.search(message)
    if m:
        return {"dtypes": [None, _dtype(next(g for g in m.groups() if g))]}
    m = _ARROW_SCHEMA.search(message)
    if m and m.group(2) != m.group(3):
        return {"dtypes": [_dtype(m.group(2)), _dtype(m.group(3))]}
    m = _NUMPY_UNKNOWN_DTYPE.search(message)
    if m:
        return {"dtypes": [None, m.group(1)]}
    if _DTYPE_NO_NAMES.search(message):
        return {"dtypes": [None, None]}
    return None
