"""PyTorch tensor operations, raised at test time.

In-place and broadcasting ops, indexing, linear algebra, the meta device,
checkpoint loading and ``map_location``, and autograd.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from snakepit.errors import DeviceMismatchError, DeviceNotAvailableError, ShapeError

from ._case import Case, _case, dtype_case, plain_case, shape_case


def torch_ops_cases() -> Iterator[Case]:
    try:
        import torch
        from torch import nn
    except ImportError:
        return
    c = "torch"
    ones, zeros = torch.ones, torch.zeros
    long = torch.long

    # ------------------------------------------------ in-place, broadcasting
    yield shape_case(
        c,
        "add-inplace-output",
        lambda: zeros(3, 1).add_(ones(3, 4)),
        (3, 1),
        (3, 4),
        operation="broadcast",
    )
    yield shape_case(c, "mul-inplace-output", lambda: zeros(4).mul_(ones(2, 4)), (4,), (2, 4))
    yield shape_case(c, "div-inplace-output", lambda: ones(5).div_(ones(2, 5)), (5,), (2, 5))
    yield shape_case(c, "copy-inplace", lambda: zeros(3).copy_(ones(4)), (3,), (4,), dimension=0)
    yield shape_case(
        c, "slice-assign", lambda: zeros(3).__setitem__(slice(0, 2), ones(3)), (2,), (3,)
    )
    yield shape_case(c, "sub-broadcast", lambda: ones(2, 3) - ones(4, 3), (2,), (4,), dimension=0)
    yield shape_case(c, "maximum-broadcast", lambda: torch.maximum(ones(3), ones(5)), (3,), (5,))
    yield shape_case(c, "pow-broadcast", lambda: torch.pow(ones(2, 2), ones(3)), (2,), (3,))
    bool_mask = torch.ones(3, 2, dtype=torch.bool)
    yield shape_case(
        c, "masked-fill-inplace", lambda: ones(2, 3).masked_fill_(bool_mask, 0), (3,), (2,)
    )
    yield shape_case(
        c, "expand-vector", lambda: ones(3).expand(2, 4), (2, 4), (3,), operation="expand"
    )
    yield shape_case(
        c,
        "broadcast-to",
        lambda: torch.broadcast_to(ones(3, 2), (3, 3)),
        (3, 3),
        (3, 2),
        operation="expand",
    )
    yield shape_case(
        c,
        "where-broadcast",
        lambda: torch.where(ones(3) > 0, ones(3), ones(4)),
        (3,),
        (4,),
        dimension=0,
    )
    yield dtype_case(
        c, "mul-inplace-int32", lambda: zeros(3, dtype=torch.int32).mul_(1.5), "int32", "float32"
    )
    yield dtype_case(
        c, "add-inplace-bool", lambda: zeros(3, dtype=torch.bool).add_(ones(3)), "bool", "float32"
    )
    yield dtype_case(
        c, "div-inplace-uint8", lambda: ones(3, dtype=torch.uint8).div_(2), "uint8", "float32"
    )
    yield dtype_case(
        c,
        "add-out-long",
        lambda: torch.add(ones(3), ones(3), out=zeros(3, dtype=long)),
        "int64",
        "float32",
    )
    leaf = ones(3, requires_grad=True)
    yield plain_case(c, "leaf-inplace", lambda: leaf.add_(1))

    # ------------------------------------------------------------ indexing
    grid = ones(3, 4)
    yield shape_case(c, "bool-mask-shape", lambda: grid[torch.tensor([True, False])], (2,), (3, 4))
    yield plain_case(c, "index-row", lambda: grid[5])
    yield plain_case(c, "index-column", lambda: grid[:, 7])
    yield plain_case(c, "index-tensor", lambda: grid[torch.tensor([0, 9])])
    yield plain_case(c, "index-select-range", lambda: grid.index_select(0, torch.tensor([6])))
    yield plain_case(c, "too-many-indices", lambda: ones(3)[0, 0])
    yield plain_case(c, "scatter-range", lambda: ones(3).scatter_(0, torch.tensor([5]), 1.0))
    yield _case(
        c,
        "gather-ndim",
        lambda: torch.gather(grid, 1, zeros(3, 4, 2, dtype=long)),
        ShapeError,
        shapes=(),
    )
    yield dtype_case(
        c, "gather-float-index", lambda: torch.gather(grid, 1, zeros(3, 4)), "int64", None
    )
    yield shape_case(
        c,
        "index-add-source",
        lambda: zeros(5, 3).index_add_(0, torch.tensor([0, 1]), ones(2, 4)),
        (5, 3),
        (2, 4),
    )
    yield shape_case(
        c,
        "index-put-values",
        lambda: grid.clone().__setitem__(torch.tensor([0, 1]), ones(3, 4)),
        (3, 4),
        (2, 4),
    )
    yield shape_case(
        c,
        "masked-select",
        # the mask is broadcast against self: the mask is tensor a
        lambda: torch.masked_select(ones(3), torch.ones(4, dtype=torch.bool)),
        (4,),
        (3,),
    )
    yield dtype_case(
        c,
        "index-fill-float",
        lambda: ones(3).index_fill_(0, torch.tensor([0.0]), 1),
        "int64",
        None,
    )
    yield dtype_case(
        c,
        "masked-fill-float-mask",
        lambda: ones(3).masked_fill(torch.tensor([1.0, 0.0, 1.0]), 0),
        "bool",
        "float32",
    )
    yield dtype_case(
        c, "scatter-float-index", lambda: ones(3).scatter_(0, torch.tensor([0.0]), 1), "int64", None
    )
    yield plain_case(c, "narrow-past-end", lambda: torch.narrow(ones(5), 0, 3, 4))

    # --------------------------------------------------- shape manipulation
    yield shape_case(
        c, "view-inferred", lambda: ones(3, 4).view(-1, 5), (12,), (-1, 5), operation="reshape"
    )
    yield shape_case(
        c, "reshape-inferred-6", lambda: ones(6).reshape(4, -1), (6,), (4, -1), operation="reshape"
    )
    yield shape_case(
        c,
        "split-sizes",
        lambda: torch.split(ones(5), [2, 2]),
        (5,),
        (2, 2),
    )
    yield _case(c, "permute-rank", lambda: ones(2, 3).permute(0), ShapeError, shapes=())
    yield _case(c, "repeat-rank", lambda: ones(2, 3).repeat(2), ShapeError, shapes=())
    yield plain_case(c, "transpose-dim", lambda: ones(2, 3).transpose(0, 2))
    yield plain_case(c, "squeeze-dim", lambda: ones(2, 3).squeeze(3))
    yield plain_case(c, "stack-empty", lambda: torch.stack([]))
    yield shape_case(
        c,
        "cat-dim1",
        lambda: torch.cat([ones(2, 3), ones(4, 3)], dim=1),
        (2,),
        (4,),
        operation="concatenate",
    )
    yield shape_case(
        c, "stack-vectors", lambda: torch.stack([ones(2), ones(3)]), (2,), (3,), operation="stack"
    )

    # -------------------------------------------------------- linear algebra
    yield _case(c, "mm-vector", lambda: torch.mm(ones(3), ones(3, 3)), ShapeError, shapes=())
    yield shape_case(
        c,
        "bmm-batch",
        lambda: torch.bmm(ones(2, 3, 4), ones(3, 4, 5)),
        (2, 4),
        (3, 4),
        operation="bmm",
    )
    yield shape_case(
        c,
        "addmm",
        lambda: torch.addmm(ones(3, 3), ones(3, 4), ones(5, 3)),
        (3, 4),
        (5, 3),
        operation="matmul",
    )
    yield shape_case(c, "mv-5", lambda: torch.mv(ones(3, 4), ones(5)), (3, 4), (5,), operation="mv")
    yield shape_case(
        c,
        "matmul-3d-2d",
        lambda: torch.matmul(ones(2, 3, 4), ones(5, 6)),
        (6, 4),
        (5, 6),
        operation="matmul",
    )
    yield shape_case(
        c,
        "linalg-solve",
        lambda: torch.linalg.solve(ones(3, 3), ones(4, 2)),
        (3, 3),
        (4, 2),
    )
    yield shape_case(c, "linalg-inv-square", lambda: torch.linalg.inv(ones(2, 3)), (2, 3))
    yield plain_case(c, "cholesky-not-pd", lambda: torch.linalg.cholesky(-torch.eye(2)))
    yield shape_case(c, "cross-length", lambda: torch.cross(ones(3, 3), ones(3, 2)), (3,), (2,))
    yield shape_case(
        c,
        "tensordot",
        lambda: torch.tensordot(ones(3, 4), ones(5, 6), dims=([1], [0])),
        (4,),
        (5,),
    )
    yield shape_case(
        c,
        "einsum-subscript",
        lambda: torch.einsum("ij,jk->ik", ones(3, 4), ones(5, 6)),
        (4,),
        (5,),
        unordered=True,
    )
    yield shape_case(c, "cdist-columns", lambda: torch.cdist(ones(3, 4), ones(5, 6)), (4,), (6,))
    yield dtype_case(
        c, "mm-half-float", lambda: torch.mm(ones(2, 2).half(), ones(2, 2)), "float16", "float32"
    )
    yield dtype_case(
        c,
        "bmm-double-float",
        lambda: torch.bmm(ones(2, 3, 4, dtype=torch.float64), ones(2, 4, 5)),
        "float64",
        "float32",
    )
    yield dtype_case(
        c,
        "matmul-int32-double",
        lambda: torch.matmul(ones(2, 2, dtype=torch.int32), ones(2, 2, dtype=torch.float64)),
        "int32",
        "float64",
    )
    yield dtype_case(c, "inverse-long", lambda: ones(2, 2).long().inverse(), None, "int64")
    yield dtype_case(
        c, "bitwise-and-float", lambda: torch.bitwise_and(ones(3), ones(3)), None, "float32"
    )
    yield dtype_case(c, "neg-bool", lambda: torch.neg(ones(3, dtype=torch.bool)), None, "bool")
    yield dtype_case(c, "histc-long", lambda: torch.histc(ones(3).long()), None, "int64")

    # ----------------------------------------------------------- meta device
    on_meta = ones(2, device="meta")
    yield plain_case(c, "meta-item", lambda: on_meta.item())
    yield plain_case(c, "meta-to-cpu", lambda: on_meta.cpu())
    yield shape_case(
        c,
        "meta-mm",
        lambda: ones(3, 4, device="meta") @ ones(2, 2, device="meta"),
        (3, 4),
        (2, 2),
        operation="matmul",
    )
    yield shape_case(
        c, "meta-broadcast", lambda: ones(3, device="meta") + ones(4, device="meta"), (3,), (4,)
    )
    # TensorIterator checks the common device: "Tensor on device cpu is not on the
    # expected device meta!" (the CPU operand first, the expected device second)
    yield _case(
        c,
        "meta-sub-cpu",
        lambda: ones(2, device="meta") - ones(2),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    yield _case(
        c,
        "maximum-meta-cpu",
        lambda: torch.maximum(ones(2, device="meta"), ones(2)),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    yield _case(
        c,
        "stack-meta-cpu",
        lambda: torch.stack([ones(2, device="meta"), ones(2)]),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    if not torch.backends.cuda.is_built():
        yield _case(
            c, "tensor-cuda", lambda: ones(2).cuda(), DeviceNotAvailableError, device="cuda"
        )
        yield _case(
            c,
            "module-to-cuda",
            lambda: nn.Linear(2, 2).to("cuda"),
            DeviceNotAvailableError,
            device="cuda",
        )
    yield _case(
        c, "mps-not-linked", lambda: ones(2, device="mps"), DeviceNotAvailableError, device="mps"
    )
    yield _case(
        c, "xpu-not-linked", lambda: ones(2, device="xpu"), DeviceNotAvailableError, device="xpu"
    )

    # ------------------------------------------- checkpoints, map_location
    small = nn.Linear(3, 2)
    yield shape_case(
        c,
        "load-state-dict-linear",
        lambda: small.load_state_dict(nn.Linear(4, 2).state_dict()),
        (2, 4),
        (2, 3),
    )
    conv = nn.Conv2d(3, 8, 3)
    yield shape_case(
        c,
        "load-state-dict-conv",
        lambda: conv.load_state_dict(nn.Conv2d(3, 16, 3).state_dict()),
        (16, 3, 3, 3),
        (8, 3, 3, 3),
        (16,),
        (8,),
    )
    table = nn.Embedding(10, 4)
    yield shape_case(
        c,
        "load-state-dict-embedding",
        lambda: table.load_state_dict(nn.Embedding(12, 4).state_dict()),
        (12, 4),
        (10, 4),
    )
    lstm = nn.LSTM(4, 8)
    yield shape_case(
        c,
        "load-state-dict-lstm",
        lambda: lstm.load_state_dict(nn.LSTM(4, 6).state_dict()),
        (24, 4),
        (32, 4),
        (24, 6),
        (32, 8),
        (24,),
        (32,),
        (24,),
        (32,),
    )
    yield plain_case(
        c, "load-state-dict-missing", lambda: small.load_state_dict({"weight": ones(2, 3)})
    )
    extra = {**nn.Linear(3, 2).state_dict(), "extra": ones(1)}
    yield plain_case(c, "load-state-dict-unexpected", lambda: small.load_state_dict(extra))

    def saved() -> io.BytesIO:
        buffer = io.BytesIO()
        torch.save({"w": ones(2)}, buffer)
        buffer.seek(0)
        return buffer

    if not torch.cuda.is_available():
        yield _case(
            c,
            "load-map-location-cuda",
            lambda: torch.load(saved(), map_location="cuda"),
            DeviceNotAvailableError,
            device="cuda",
        )
    yield plain_case(c, "load-garbage", lambda: torch.load(io.BytesIO(b"not a checkpoint")))

    class Custom:
        pass

    def saved_custom() -> io.BytesIO:
        buffer = io.BytesIO()
        torch.save({"obj": Custom()}, buffer)
        buffer.seek(0)
        return buffer

    yield plain_case(c, "load-weights-only", lambda: torch.load(saved_custom(), weights_only=True))

    # -------------------------------------------------------------- autograd
    x = ones(3, requires_grad=True)
    yield plain_case(c, "backward-non-scalar", lambda: (x * 2).backward())
    yield shape_case(c, "backward-grad-shape", lambda: (x * 2).backward(ones(4)), (4,), (3,))
    yield shape_case(
        c,
        "autograd-grad-outputs",
        lambda: torch.autograd.grad(x * 2, x, grad_outputs=ones(2)),
        (2,),
        (3,),
    )

    def twice() -> None:
        y = (x * x).sum()
        y.backward()
        y.backward()

    yield plain_case(c, "backward-twice", twice)
    unused = ones(2, requires_grad=True)
    yield plain_case(c, "grad-unused", lambda: torch.autograd.grad((x * 2).sum(), [x, unused]))
    yield plain_case(c, "backward-no-grad", lambda: ones(3).sum().backward())

    def modified() -> None:
        a = x.sigmoid()
        a.mul_(2)
        a.sum().backward()

    yield plain_case(c, "modified-inplace", modified)

    def assign_grad() -> None:
        y = ones(3, requires_grad=True)
        y.grad = ones(4)

    yield _case(c, "assigned-grad-size", assign_grad, ShapeError, shapes=((4,), (3,)))
