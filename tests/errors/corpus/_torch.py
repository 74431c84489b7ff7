"""PyTorch (CPU), raised at test time: matmul, broadcasting, reshape, dtypes, meta device."""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import (
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    OutOfMemoryError,
    PythonError,
    ShapeError,
)

from ._case import (
    Case,
    _case,
)


def torch_cases() -> Iterator[Case]:
    try:
        import torch
    except ImportError:
        return
    c = "torch"
    a, b = torch.randn(3, 4), torch.randn(2, 2)
    yield _case(c, "mm", lambda: a @ b, ShapeError, shapes=((3, 4), (2, 2)), operation="matmul")
    p, q = torch.randn(8, 16), torch.randn(32, 16)
    yield _case(
        c,
        "mm-transposable",
        lambda: p @ q,
        ShapeError,
        shapes=((8, 16), (32, 16)),
        operation="matmul",
    )
    layer = torch.nn.Linear(4, 2)
    wide = torch.randn(3, 5)
    yield _case(
        c, "linear", lambda: layer(wide), ShapeError, shapes=((3, 5), (4, 2)), operation="matmul"
    )
    vec = torch.randn(2)
    yield _case(c, "mv", lambda: a @ vec, ShapeError, shapes=((3, 4), (2,)), operation="mv")
    x3, y3 = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    yield _case(
        c, "bmm", lambda: torch.bmm(x3, y3), ShapeError, shapes=((2, 4), (2, 5)), operation="bmm"
    )
    yield _case(
        c,
        "matmul-batched",
        lambda: torch.matmul(x3, y3),
        ShapeError,
        shapes=((2, 4), (2, 5)),
        operation="bmm",
    )
    yield _case(
        c,
        "dot",
        lambda: torch.dot(torch.randn(3), torch.randn(4)),
        ShapeError,
        shapes=((3,), (4,)),
        operation="dot",
    )
    yield _case(
        c,
        "broadcast",
        lambda: torch.randn(3, 4) + torch.randn(3, 5),
        ShapeError,
        shapes=((4,), (5,)),
        operation="broadcast",
        dimension=1,
    )
    cond, m, n = torch.randn(3, 4) > 0, torch.randn(2, 4), torch.randn(5, 4)
    yield _case(
        c,
        "where-3",
        lambda: torch.where(cond, m, n),
        ShapeError,
        shapes=((3,), (2,)),
        operation="broadcast",
        dimension=0,
    )
    yield _case(
        c,
        "broadcast-tensors-3",
        lambda: torch.broadcast_tensors(cond, m, n),
        ShapeError,
        shapes=((3,), (2,)),
        operation="broadcast",
        dimension=0,
    )
    yield _case(
        c,
        "mse-loss",
        lambda: torch.nn.functional.mse_loss(torch.randn(3, 4), torch.randn(3, 5)),
        ShapeError,
        shapes=((4,), (5,)),
        operation="broadcast",
        dimension=1,
    )
    logits, target = torch.randn(3, 4), torch.randn(3, 1)
    yield _case(
        c,
        "bce-target-size",
        lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, target),
        ShapeError,
        shapes=((3, 1), (3, 4)),
    )
    t12 = torch.randn(3, 4)
    yield _case(
        c, "view", lambda: t12.view(5, 3), ShapeError, shapes=((12,), (5, 3)), operation="reshape"
    )
    yield _case(
        c,
        "reshape-inferred",
        lambda: torch.randn(2, 3, 4).reshape(5, -1),
        ShapeError,
        shapes=((24,), (5, -1)),
        operation="reshape",
    )
    yield _case(
        c, "view-non-contiguous", lambda: t12.t().view(12), ShapeError, shapes=(), operation="view"
    )
    yield _case(
        c,
        "unflatten",
        lambda: torch.randn(12).unflatten(0, (5, 3)),
        ShapeError,
        shapes=((12,), (5, 3)),
        operation="reshape",
    )
    yield _case(
        c,
        "cat",
        lambda: torch.cat([torch.randn(3, 4), torch.randn(3, 5)]),
        ShapeError,
        shapes=((4,), (5,)),
        operation="concatenate",
    )
    yield _case(
        c,
        "cat-ndim",
        lambda: torch.cat([torch.randn(3, 4), torch.randn(3)]),
        ShapeError,
        shapes=(),
        operation="ndim",
    )
    yield _case(
        c,
        "stack",
        lambda: torch.stack([torch.randn(3, 4), torch.randn(3, 5)]),
        ShapeError,
        shapes=((3, 4), (3, 5)),
        operation="stack",
    )
    yield _case(
        c,
        "expand",
        lambda: torch.randn(3, 4).expand(2, 5),
        ShapeError,
        shapes=((2, 5), (3, 4)),
        operation="expand",
        dimension=1,
    )
    conv = torch.nn.Conv2d(3, 8, 3)
    image = torch.randn(1, 4, 10, 10)
    yield _case(
        c,
        "conv-channels",
        lambda: conv(image),
        ShapeError,
        shapes=(tuple(conv.weight.shape), tuple(image.shape)),
        operation="conv",
        dimension=1,
    )
    norm = torch.nn.LayerNorm(4)
    yield _case(
        c,
        "layer-norm",
        lambda: norm(torch.randn(3, 5)),
        ShapeError,
        shapes=((4,), (3, 5)),
        operation="normalize",
    )
    batch_norm = torch.nn.BatchNorm1d(4)
    yield _case(
        c,
        "batch-norm",
        lambda: batch_norm(torch.randn(3, 5)),
        ShapeError,
        shapes=((5,), (4,)),
        operation="normalize",
    )
    lstm = torch.nn.LSTM(4, 8)
    yield _case(
        c,
        "lstm-input-size",
        lambda: lstm(torch.randn(5, 2, 3)),
        ShapeError,
        shapes=((3,), (4,)),
        operation="features",
    )
    yield _case(c, "index", lambda: torch.randn(3)[5], PythonError)
    yield _case(
        c, "embedding-index", lambda: torch.nn.Embedding(3, 2)(torch.tensor([5])), PythonError
    )
    yield _case(c, "dim-out-of-range", lambda: torch.randn(3).sum(dim=2), PythonError)
    doubles = torch.randn(3, 4, dtype=torch.float64)
    yield _case(
        c,
        "linear-dtype",
        lambda: layer(torch.randn(3, 4, dtype=torch.float64)),
        DtypeError,
        dtypes=("float64", "float32"),
    )
    yield _case(
        c,
        "mm-dtype",
        lambda: torch.randn(3, 4) @ doubles.T,
        DtypeError,
        dtypes=("float32", "float64"),
    )
    yield _case(
        c,
        "mm-long-float",
        lambda: torch.ones(2, 2).long() @ torch.ones(2, 2),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    conv1 = torch.nn.Conv1d(1, 1, 1)
    yield _case(
        c,
        "conv-double",
        lambda: conv1(torch.ones(1, 1, 3, dtype=torch.float64)),
        DtypeError,
        dtypes=("float32", "float64"),
    )
    yield _case(
        c,
        "conv-long",
        lambda: conv1(torch.ones(1, 1, 3).long()),
        DtypeError,
        dtypes=("float32", "int64"),
    )
    yield _case(
        c,
        "nll-target",
        lambda: torch.nn.functional.nll_loss(torch.randn(3, 4), torch.tensor([1.0, 2.0, 3.0])),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    yield _case(
        c,
        "inplace-result-type",
        lambda: torch.zeros(3, dtype=torch.long).add_(torch.randn(3)),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    yield _case(
        c,
        "dot-dtype",
        lambda: torch.dot(torch.ones(3).long(), torch.ones(3)),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    yield _case(
        c, "mean-of-ints", lambda: torch.ones(3).long().mean(), DtypeError, dtypes=(None, "int64")
    )
    yield _case(
        c,
        "index-dtype",
        lambda: torch.ones(3).index_select(0, torch.tensor([0.5])),
        DtypeError,
        dtypes=("int64", None),
        operation="index",
    )
    yield _case(
        c,
        "embedding-dtype",
        lambda: torch.nn.Embedding(3, 2)(torch.tensor([0.5])),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    mask = torch.tensor([1, 0, 1])
    yield _case(
        c,
        "masked-fill",
        lambda: torch.zeros(3).masked_fill(mask, 0),
        DtypeError,
        dtypes=("bool", "int64"),
    )
    yield _case(
        c,
        "lerp",
        lambda: torch.lerp(torch.ones(2), torch.ones(2).double(), 0.5),
        DtypeError,
        dtypes=("float32", "float64"),
    )
    yield _case(
        c,
        "addmm-half",
        lambda: torch.ones(2).addmm(torch.ones(2, 2).half(), torch.ones(2, 2)),
        DtypeError,
        dtypes=("float16", "float32"),
    )
    meta_layer = torch.nn.Linear(2, 2, device="meta")
    yield _case(
        c,
        "meta-vs-cpu",
        lambda: meta_layer(torch.ones(1, 2)),
        DeviceMismatchError,
        devices=("meta", "cpu"),
    )
    on_meta = torch.ones(2, 2, device="meta")
    yield _case(
        c,
        "cpu-vs-meta",
        lambda: on_meta * torch.ones(2, 2),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    yield _case(
        c,
        "cat-devices",
        lambda: torch.cat([torch.ones(2, device="meta"), torch.ones(2)]),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    if not torch.backends.cuda.is_built():
        yield _case(
            c,
            "cuda-not-built",
            lambda: torch.zeros(1, device="cuda"),
            DeviceNotAvailableError,
            device="cuda",
        )
    size = 1 << 60
    yield _case(
        c,
        "cpu-oom",
        lambda: torch.empty(size, dtype=torch.uint8),
        OutOfMemoryError,
        device="cpu",
        requested=size,
        framework="torch",
    )
