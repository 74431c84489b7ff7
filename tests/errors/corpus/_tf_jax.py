"""TensorFlow/Keras and JAX messages, rebuilt from their sources (cited next to each).

Neither library is installed here, so each message is put together from the
format string in the library's public source, filled with the inputs the
case describes, and raised from a stand-in with the real module and type
name (see :func:`._case._raised`). TensorFlow's eager runtime wraps a
kernel's message as ``{{function_node __wrapped__<Op>_device_<device>}}
<message> [Op:<Op>] name: `` (tensorflow/tensorflow
tensorflow/python/eager/execute.py, via ``core._status_to_exception``).
"""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import (
    DeviceNotAvailableError,
    DtypeError,
    OutOfMemoryError,
    PythonError,
    ShapeError,
)

from ._case import PROBE_FREE, PROBE_TOTAL, Case, Shape, _raised

_TF_ERRORS = "tensorflow.python.framework.errors_impl"
_CPU = "/job:localhost/replica:0/task:0/device:CPU:0"


def _tf_shape(shape: Shape) -> str:
    """``TensorShape::DebugString``: ``[3,4]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def _eager(op: str, message: str, device: str = _CPU) -> str:
    return f"{{{{function_node __wrapped__{op}_device_{device}}}}} {message} [Op:{op}] name: "


def _tf(name: str, type_name: str, message: str, **kw: object) -> Case:
    error = _raised(_TF_ERRORS, type_name, Exception, message)
    kind = kw.pop("kind", ShapeError)
    return Case("tf-source", name, error, kind, **kw)  # type: ignore[arg-type]


def _keras(name: str, message: str, **kw: object) -> Case:
    kind = kw.pop("kind", ShapeError)
    return Case(
        "tf-source", name, _raised("builtins", "ValueError", ValueError, message), kind, **kw
    )  # type: ignore[arg-type]


def _jax(name: str, base: type[BaseException], message: str, **kw: object) -> Case:
    kind = kw.pop("kind", ShapeError)
    error = _raised("builtins", base.__name__, base, message)
    return Case("jax-source", name, error, kind, **kw)  # type: ignore[arg-type]


def tf_cases() -> Iterator[Case]:
    # tensorflow/tensorflow tensorflow/core/kernels/matmul_op.cc (MatMulOp::Compute):
    # "Matrix size-incompatible: In[0]: ", a.shape().DebugString(), ", In[1]: ", b...
    a, b = (3, 4), (2, 2)
    message = f"Matrix size-incompatible: In[0]: {_tf_shape(a)}, In[1]: {_tf_shape(b)}"
    yield _tf(
        "matmul",
        "InvalidArgumentError",
        _eager("MatMul", message),
        shapes=(a, b),
        operation="matmul",
        source="tensorflow/tensorflow tensorflow/core/kernels/matmul_op.cc",
    )
    # tensorflow/tensorflow tensorflow/core/kernels/matmul_op_impl.h (BaseBatchMatMulOp):
    # the same text followed by " ", adj_x_, " ", adj_y_ (absl::StrCat prints bools as 0/1)
    a, b = (2, 3, 4), (2, 5, 6)
    message = f"Matrix size-incompatible: In[0]: {_tf_shape(a)}, In[1]: {_tf_shape(b)} 0 0"
    yield _tf(
        "batch-matmul",
        "InvalidArgumentError",
        _eager("BatchMatMulV2", message),
        shapes=(a, b),
        operation="matmul",
        source="tensorflow/tensorflow tensorflow/core/kernels/matmul_op_impl.h",
    )
    # tensorflow/tensorflow tensorflow/core/kernels/cwise_ops_common.cc (BinaryOpState):
    # "Incompatible shapes: ", in0.shape().ShortDebugString(), " vs. ", in1...
    a, b = (3, 4), (3, 5)
    message = f"Incompatible shapes: {_tf_shape(a)} vs. {_tf_shape(b)}"
    yield _tf(
        "add-broadcast",
        "InvalidArgumentError",
        _eager("AddV2", message),
        shapes=(a, b),
        operation="broadcast",
        source="tensorflow/tensorflow tensorflow/core/kernels/cwise_ops_common.cc",
    )
    a, b = (8, 1, 16), (8, 3, 15)
    message = f"Incompatible shapes: {_tf_shape(a)} vs. {_tf_shape(b)}"
    yield _tf(
        "mul-broadcast-3d",
        "InvalidArgumentError",
        _eager("Mul", message),
        shapes=(a, b),
        operation="broadcast",
        source="tensorflow/tensorflow tensorflow/core/kernels/cwise_ops_common.cc",
    )
    # tensorflow/tensorflow tensorflow/core/kernels/reshape_op.h (ReshapeOp::Compute):
    # "Input to reshape is a tensor with ", num_elements, " values, but the requested
    # shape has ", product  /  "... but the requested shape requires a multiple of ", product
    # (a (3, 4) tensor reshaped to [2, 5])
    message = (
        f"Input to reshape is a tensor with {3 * 4} values, but the requested shape has {2 * 5}"
    )
    yield _tf(
        "reshape",
        "InvalidArgumentError",
        _eager("Reshape", message),
        shapes=((12,), (10,)),
        operation="reshape",
        source="tensorflow/tensorflow tensorflow/core/kernels/reshape_op.h",
    )
    message = (
        "Input to reshape is a tensor with 12 values, but the requested shape requires a "
        "multiple of 5"
    )
    yield _tf(
        "reshape-inferred",
        "InvalidArgumentError",
        _eager("Reshape", message),
        shapes=((12,), (5,)),
        operation="reshape",
        source="tensorflow/tensorflow tensorflow/core/kernels/reshape_op.h",
    )
    # tensorflow/tensorflow tensorflow/core/kernels/concat_op.cc (ConcatBaseOp::Compute):
    # "ConcatOp : Dimensions of inputs should match: shape[0] = ", first.DebugString(),
    # " vs. shape[", i, "] = ", in.shape().DebugString()
    a, b = (3, 4), (3, 5)
    message = (
        f"ConcatOp : Dimensions of inputs should match: shape[0] = {_tf_shape(a)} vs. "
        f"shape[1] = {_tf_shape(b)}"
    )
    yield _tf(
        "concat",
        "InvalidArgumentError",
        _eager("ConcatV2", message),
        shapes=(a, b),
        operation="concatenate",
        source="tensorflow/tensorflow tensorflow/core/kernels/concat_op.cc",
    )
    # tensorflow/tensorflow tensorflow/core/common_runtime/eager/execute.cc
    # (ValidateInputTypeAndPlacement): "cannot compute ", op->Name(), " as input #", i,
    # "(zero-based) was expected to be a ", DataTypeString(expected), " tensor but is a ",
    # DataTypeString(actual), " tensor"
    for name, op, expected, got, want in (
        ("add-dtype", "AddV2", "float", "int32", ("float32", "int32")),
        ("matmul-dtype", "MatMul", "double", "float", ("float64", "float32")),
        ("sub-dtype", "Sub", "int64", "half", ("int64", "float16")),
    ):
        message = (
            f"cannot compute {op} as input #1(zero-based) was expected to be a {expected} "
            f"tensor but is a {got} tensor"
        )
        yield _tf(
            name,
            "InvalidArgumentError",
            _eager(op, message),
            kind=DtypeError,
            dtypes=want,
            source="tensorflow/tensorflow tensorflow/core/common_runtime/eager/execute.cc",
        )
    # Graph mode (tf.function tracing): tensorflow/tensorflow
    # tensorflow/core/framework/shape_inference.cc (InferenceContext::Merge): "Dimensions
    # must be equal, but are ", dim0, " and ", dim1; tensorflow/python/framework/ops.py
    # appends " for '{{node ...}} = ...' with input shapes: " and the shapes; a ValueError.
    a, b = (3, 4), (2, 2)
    message = (
        "Dimensions must be equal, but are 4 and 2 for '{{node MatMul}} = MatMul[T=DT_FLOAT, "
        "grad_a=false, grad_b=false, transpose_a=false, transpose_b=false](a, b)' with input "
        f"shapes: {_tf_shape(a)}, {_tf_shape(b)}."
    )
    yield Case(
        "tf-source",
        "graph-matmul",
        _raised("builtins", "ValueError", ValueError, message),
        ShapeError,
        shapes=(a, b),
        operation="matmul",
        source="tensorflow/tensorflow tensorflow/core/framework/shape_inference.cc",
    )
    # tensorflow/tensorflow tensorflow/core/framework/common_shape_fns.cc
    # (BroadcastBinaryOpOutputShapeFnHelper): "Dimensions must be equal, but are ", ...
    a, b = (3, 4), (3, 5)
    message = (
        "Dimensions must be equal, but are 4 and 5 for '{{node add}} = AddV2[T=DT_FLOAT](x, y)' "
        f"with input shapes: {_tf_shape(a)}, {_tf_shape(b)}."
    )
    yield Case(
        "tf-source",
        "graph-add",
        _raised("builtins", "ValueError", ValueError, message),
        ShapeError,
        shapes=(a, b),
        operation="broadcast",
        source="tensorflow/tensorflow tensorflow/core/framework/common_shape_fns.cc",
    )
    # tensorflow/tensorflow tensorflow/core/framework/op_kernel.cc
    # (OpKernelContext::allocate_tensor): "OOM when allocating tensor with shape",
    # shape.DebugString(), " and type ", DataTypeString(type), " on ", device, " by
    # allocator ", allocator->Name(); a ResourceExhaustedError.
    shape = (1024, 1024, 256)
    gpu = "/job:localhost/replica:0/task:0/device:GPU:0"
    message = (
        f"OOM when allocating tensor with shape{_tf_shape(shape)} and type float on {gpu} by "
        "allocator GPU_0_bfc"
    )
    yield _tf(
        "oom",
        "ResourceExhaustedError",
        _eager("RandomStandardNormal", message, gpu),
        kind=OutOfMemoryError,
        device="gpu:0",
        requested=1024 * 1024 * 256 * 4,
        available=PROBE_FREE,
        total=PROBE_TOTAL,
        framework="tensorflow",
        source="tensorflow/tensorflow tensorflow/core/framework/op_kernel.cc",
    )

    # keras-team/keras keras/src/layers/input_spec.py (assert_input_compatibility):
    # f'Input {input_index} of layer "{layer_name}" is incompatible with the layer: '
    # f"expected axis {axis} of input shape to have value {value}, but received input "
    # f"with shape {shape}"  /  f"expected min_ndim={spec.min_ndim}, found ndim={ndim}. "
    # f"Full shape received: {shape}"  /  f"expected ndim={spec.ndim}, found ndim={ndim}. ..."
    source = "keras-team/keras keras/src/layers/input_spec.py"
    yield _keras(
        "dense-axis",
        'Input 0 of layer "dense" is incompatible with the layer: expected axis -1 of input '
        "shape to have value 4, but received input with shape (3, 5)",
        shapes=((5,), (4,)),
        dimension=-1,
        operation="features",
        source=source,
    )
    yield _keras(
        "conv2d-min-ndim",
        'Input 0 of layer "conv2d" is incompatible with the layer: expected min_ndim=4, found '
        "ndim=3. Full shape received: (28, 28, 1)",
        shapes=((28, 28, 1),),
        operation="ndim",
        source=source,
    )
    yield _keras(
        "lstm-ndim",
        'Input 0 of layer "lstm" is incompatible with the layer: expected ndim=3, found ndim=2. '
        "Full shape received: (32, 10)",
        shapes=((32, 10),),
        operation="ndim",
        source=source,
    )
    # keras-team/keras keras/src/backend/tensorflow/nn.py (binary_crossentropy,
    # categorical_crossentropy): "Arguments `target` and `output` must have the same shape.
    # Received: " f"target.shape={target.shape}, output.shape={output.shape}"
    source = "keras-team/keras keras/src/backend/tensorflow/nn.py"
    yield _keras(
        "crossentropy-shape",
        "Arguments `target` and `output` must have the same shape. Received: "
        "target.shape=(None, 1), output.shape=(None, 10)",
        kind=ShapeError,
        shapes=((1,), (10,)),
        source=source,
    )
    yield _keras(
        "crossentropy-rank",
        "Arguments `target` and `output` must have the same rank (ndim). Received: "
        "target.shape=(3,), output.shape=(3, 4)",
        shapes=((3,), (3, 4)),
        source=source,
    )
    # keras-team/keras keras/src/layers/input_spec.py: f'Layer "{layer_name}" expects
    # {len(input_spec)} input(s), but it received {len(inputs)} input tensors.'
    yield _keras(
        "input-count",
        'Layer "functional" expects 2 input(s), but it received 1 input tensors. Inputs '
        "received: [<KerasTensor shape=(None, 3), dtype=float32, sparse=False, name=x>]",
        kind=PythonError,
        source="keras-team/keras keras/src/layers/input_spec.py",
    )


def jax_cases() -> Iterator[Case]:
    lax = "jax-ml/jax jax/_src/lax/lax.py"
    # jax-ml/jax jax/_src/lax/lax.py (_broadcasting_shape_rule / _try_broadcast_shapes):
    # f"{name} got incompatible shapes for broadcasting: {', '.join(map(str, shapes))}."
    a, b = (3, 4), (3, 5)
    yield _jax(
        "add-broadcast",
        TypeError,
        f"add got incompatible shapes for broadcasting: {a}, {b}.",
        shapes=(a, b),
        operation="broadcast",
        source=lax,
    )
    a, b = (2, 3), (4,)
    yield _jax(
        "mul-rank",
        TypeError,
        f"mul got arrays of different rank: {a}, {b}.",
        shapes=(a, b),
        source=lax,
    )
    # same file (broadcast_shapes): f"Incompatible shapes for broadcasting: shapes={list(shapes)}"
    a, b = (3, 1), (4, 1)
    yield _jax(
        "broadcast-shapes",
        ValueError,
        f"Incompatible shapes for broadcasting: shapes={[a, b]}",
        shapes=(a, b),
        operation="broadcast",
        source=lax,
    )
    # same file (_dot_general_shape_rule): "dot_general requires contracting dimensions to
    # have the same shape, got {} and {}."
    yield _jax(
        "dot-general",
        TypeError,
        "dot_general requires contracting dimensions to have the same shape, got "
        f"{(4,)} and {(2,)}.",
        shapes=((4,), (2,)),
        operation="matmul",
        source=lax,
    )
    # same file (_concatenate_shape_rule): "Cannot concatenate arrays with shapes that differ
    # in dimensions other than the one being concatenated: concatenating along dimension
    # {dimension} for shapes {', '.join(map(str, shapes))}."
    a, b = (3, 4), (3, 5)
    yield _jax(
        "concatenate",
        TypeError,
        "Cannot concatenate arrays with shapes that differ in dimensions other than the one "
        f"being concatenated: concatenating along dimension 0 for shapes {a}, {b}.",
        shapes=(a, b),
        operation="concatenate",
        source=lax,
    )
    # jax-ml/jax jax/_src/numpy/lax_numpy.py (_compute_newshape): f"cannot reshape array of
    # shape {arr.shape} (size {arr.size}) into shape {orig_newshape} (size {math.prod(newshape)})"
    yield _jax(
        "reshape",
        TypeError,
        "cannot reshape array of shape (3, 4) (size 12) into shape (5,) (size 5)",
        shapes=((3, 4), (5,)),
        operation="reshape",
        source="jax-ml/jax jax/_src/numpy/lax_numpy.py",
    )
    # jax-ml/jax jax/_src/lax/lax.py (check_same_dtypes): "lax.{} requires arguments to
    # have the same dtypes, got {}." plus the jnp tip for functions that promote.
    for name, op, dtypes in (
        ("add-dtypes", "add", ("float32", "int32")),
        ("mul-dtypes", "mul", ("bfloat16", "float32")),
    ):
        yield _jax(
            name,
            TypeError,
            f"lax.{op} requires arguments to have the same dtypes, got {', '.join(dtypes)}. "
            f"(Tip: jnp.{'multiply' if op == 'mul' else op} is a similar function that does "
            "automatic type promotion on inputs).",
            kind=DtypeError,
            dtypes=dtypes,
            source=lax,
        )
    # jax-ml/jax jax/_src/lax/convolution.py (conv_shape_tuple / _conv_general_dilated_shape_rule):
    # "conv_general_dilated lhs feature dimension size divided by feature_group_count must
    # equal the rhs input feature dimension size, but {} // {} != {}."
    yield _jax(
        "conv-features",
        TypeError,
        "conv_general_dilated lhs feature dimension size divided by feature_group_count must "
        "equal the rhs input feature dimension size, but 4 // 1 != 3.",
        shapes=((4,), (3,)),
        source="jax-ml/jax jax/_src/lax/convolution.py",
    )
    # jax-ml/jax jax/_src/xla_bridge.py (_get_backend_uncached): f"Unknown backend:
    # '{platform}' requested, but no platforms that are instances of {platform} are
    # present. Platforms present are: " + ",".join(platforms)
    yield _jax(
        "unknown-backend",
        RuntimeError,
        "Unknown backend: 'gpu' requested, but no platforms that are instances of gpu are "
        "present. Platforms present are: cpu",
        kind=DeviceNotAvailableError,
        device="gpu",
        source="jax-ml/jax jax/_src/xla_bridge.py",
    )
    yield _jax(
        "unknown-backend-tpu",
        RuntimeError,
        "Unknown backend: 'tpu' requested, but no platforms that are instances of tpu are "
        "present. Platforms present are: cpu",
        kind=DeviceNotAvailableError,
        device="tpu",
        source="jax-ml/jax jax/_src/xla_bridge.py",
    )
    # jax-ml/jax jax/_src/errors.py (TracerIntegerConversionError) message opening
    yield _jax(
        "tracer-integer",
        TypeError,
        "The __index__() method was called on traced array with shape int32[].\n"
        "The error occurred while tracing the function f at <stdin>:1 for jit.",
        kind=PythonError,
        source="jax-ml/jax jax/_src/errors.py",
    )
