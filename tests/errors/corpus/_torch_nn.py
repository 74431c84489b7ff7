"""torch.nn and torch.nn.functional layers, raised at test time.

Convolution, pooling, interpolation, embedding, losses, recurrent layers,
normalisation, attention and sampling grids. Shapes are the ones fed in (the
layer's weight where the message names it), in the order the message names
them; layers that compare a count keep ``[input's, expected]``.
"""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import ShapeError

from ._case import Case, _case, dtype_case, plain_case, shape_case


def torch_nn_cases() -> Iterator[Case]:
    try:
        import torch
        from torch import nn
        from torch.nn import functional as fn
    except ImportError:
        return
    c = "torch"
    ones = torch.ones

    # ---------------------------------------------------------- convolution
    conv1 = nn.Conv1d(3, 8, 3)
    yield shape_case(c, "conv1d-channels", lambda: conv1(ones(2, 4, 10)), (8, 3, 3), (2, 4, 10))
    conv3 = nn.Conv3d(2, 4, 3)
    yield shape_case(
        c, "conv3d-channels", lambda: conv3(ones(1, 3, 5, 5, 5)), (4, 2, 3, 3, 3), (1, 3, 5, 5, 5)
    )
    grouped = nn.Conv2d(4, 8, 3, groups=2)
    yield shape_case(
        c, "conv2d-groups", lambda: grouped(ones(1, 6, 8, 8)), (8, 2, 3, 3), (1, 6, 8, 8)
    )
    conv2 = nn.Conv2d(1, 1, 3)
    yield shape_case(c, "conv2d-5d-input", lambda: conv2(ones(1, 1, 3, 8, 8)), (1, 1, 3, 8, 8))
    wide = nn.Conv2d(1, 1, 5)
    yield shape_case(c, "conv2d-kernel-too-big", lambda: wide(ones(1, 1, 3, 3)), (3, 3), (5, 5))
    up = nn.ConvTranspose2d(3, 8, 3)
    yield shape_case(
        c, "conv-transpose-channels", lambda: up(ones(1, 4, 5, 5)), (3, 8, 3, 3), (1, 4, 5, 5)
    )
    yield shape_case(
        c,
        "functional-conv2d",
        lambda: fn.conv2d(ones(2, 5, 6, 6), ones(4, 3, 3, 3)),
        (4, 3, 3, 3),
        (2, 5, 6, 6),
    )
    yield dtype_case(
        # the layer's (float32) parameters are what the half input should have matched
        c,
        "conv2d-half-weight",
        lambda: conv2(ones(1, 1, 4, 4).half()),
        "float32",
        "float16",
    )

    # -------------------------------------------------------------- pooling
    yield shape_case(
        c, "max-pool2d-too-small", lambda: fn.max_pool2d(ones(1, 1, 3, 3), 5), (1, 3, 3), (1, 0, 0)
    )
    yield shape_case(
        c, "avg-pool2d-too-small", lambda: fn.avg_pool2d(ones(1, 2, 4, 4), 6), (2, 4, 4), (2, 0, 0)
    )
    yield plain_case(c, "max-pool-padding", lambda: fn.max_pool2d(ones(1, 1, 4, 4), 2, padding=2))
    yield _case(
        c, "max-pool1d-output", lambda: fn.max_pool1d(ones(1, 1, 2), 3), ShapeError, shapes=()
    )

    # -------------------------------------------------------- interpolation
    image = ones(1, 1, 4, 4)
    yield shape_case(
        c, "interpolate-size-rank", lambda: fn.interpolate(image, size=(2, 2, 2)), (4, 4), (2, 2, 2)
    )
    yield shape_case(
        c,
        "interpolate-scale-rank",
        lambda: fn.interpolate(image, scale_factor=(2.0, 2.0, 2.0)),
        (4, 4),  # the scale factors are not a shape
    )
    yield plain_case(
        c, "interpolate-size-and-scale", lambda: fn.interpolate(image, size=2, scale_factor=2.0)
    )
    yield _case(
        c,
        "interpolate-bilinear-3d",
        lambda: fn.interpolate(ones(1, 1, 4), size=8, mode="bilinear"),
        ShapeError,
        shapes=(),
    )

    # ------------------------------------------------------------ embedding
    table = nn.Embedding(10, 3)
    yield plain_case(c, "embedding-out-of-range", lambda: table(torch.tensor([[10]])))
    yield dtype_case(
        c,
        "embedding-double-index",
        lambda: table(torch.tensor([1.0], dtype=torch.float64)),
        "int64",
        "float64",
    )
    bag = nn.EmbeddingBag(10, 3)
    yield plain_case(
        c, "embedding-bag-offsets", lambda: bag(torch.tensor([[1, 2]]), offsets=torch.tensor([0]))
    )
    yield plain_case(c, "embedding-padding-idx", lambda: nn.Embedding(3, 2, padding_idx=5))

    # --------------------------------------------------------------- losses
    scores, labels = ones(3, 5), torch.zeros(4, dtype=torch.long)
    yield shape_case(
        c, "cross-entropy-batch", lambda: fn.cross_entropy(scores, labels), (3,), (4,), dimension=0
    )
    yield shape_case(
        c, "nll-loss-batch", lambda: fn.nll_loss(scores, labels), (3,), (4,), dimension=0
    )
    yield shape_case(
        c,
        "cross-entropy-spatial-target",
        lambda: fn.cross_entropy(ones(2, 5, 4), torch.zeros(2, 3, dtype=torch.long)),
        (2, 4),
        (2, 3),
    )
    yield plain_case(
        c,
        "cross-entropy-class-out-of-range",
        lambda: fn.cross_entropy(scores, torch.tensor([7, 0, 0])),
    )
    yield shape_case(
        c, "l1-loss-broadcast", lambda: fn.l1_loss(ones(3, 4), ones(3, 5)), (4,), (5,), dimension=1
    )
    yield shape_case(
        c,
        "smooth-l1-broadcast",
        lambda: fn.smooth_l1_loss(ones(2, 3), ones(2, 4)),
        (3,),
        (4,),
        dimension=1,
    )
    yield shape_case(
        c, "huber-broadcast", lambda: fn.huber_loss(ones(5), ones(6)), (5,), (6,), dimension=0
    )
    # kl_div computes target * (log(target) - input): the target is tensor a
    yield shape_case(
        c, "kl-div-broadcast", lambda: fn.kl_div(ones(3, 4), ones(3, 5)), (5,), (4,), dimension=1
    )
    yield shape_case(
        c,
        "margin-ranking-broadcast",
        lambda: fn.margin_ranking_loss(ones(3), ones(4), ones(3)),
        (3,),
        (4,),
        dimension=0,
    )
    yield shape_case(
        c,
        "bce-probabilities-target",
        lambda: fn.binary_cross_entropy(ones(3, 4) / 2, ones(3, 5)),
        (3, 5),
        (3, 4),
    )
    yield shape_case(
        c,
        "bce-logits-transposed",
        lambda: fn.binary_cross_entropy_with_logits(ones(2, 3), ones(3, 2)),
        (3, 2),
        (2, 3),
    )
    yield _case(
        c,
        "nll-multi-target",
        lambda: fn.nll_loss(scores, torch.zeros(3, 2, dtype=torch.long)),
        ShapeError,
        shapes=(),
    )
    yield dtype_case(
        c,
        "cross-entropy-int32-target",
        lambda: fn.cross_entropy(scores, torch.zeros(3, dtype=torch.int32)),
        "int64",
        "int32",
    )

    # ----------------------------------------------------- recurrent layers
    gru, rnn = nn.GRU(4, 8), nn.RNN(4, 8)
    yield shape_case(
        c, "gru-input-size", lambda: gru(ones(5, 2, 3)), (3,), (4,), operation="features"
    )
    yield shape_case(
        c, "rnn-input-size", lambda: rnn(ones(5, 2, 6)), (6,), (4,), operation="features"
    )
    lstm = nn.LSTM(4, 8)
    state = (ones(1, 3, 8), ones(1, 3, 8))
    yield shape_case(
        c, "lstm-hidden-batch", lambda: lstm(ones(5, 2, 4), state), (1, 2, 8), (1, 3, 8)
    )
    yield shape_case(
        c, "gru-hidden-size", lambda: gru(ones(5, 2, 4), ones(1, 2, 7)), (1, 2, 8), (1, 2, 7)
    )
    yield _case(c, "lstm-4d-input", lambda: lstm(ones(5, 2, 4, 1)), ShapeError, shapes=())
    cell = nn.RNNCell(4, 8)
    yield shape_case(c, "rnn-cell-input-size", lambda: cell(ones(3, 5)), (5,), (4,))
    lstm_cell = nn.LSTMCell(4, 8)
    yield shape_case(
        c,
        "lstm-cell-batch",
        lambda: lstm_cell(ones(3, 4), (ones(2, 8), ones(2, 8))),
        (3,),
        (2,),
    )
    gru_cell = nn.GRUCell(4, 8)
    yield shape_case(
        c, "gru-cell-hidden-size", lambda: gru_cell(ones(3, 4), ones(3, 7)), (7,), (8,)
    )
    yield dtype_case(
        c, "lstm-double-input", lambda: lstm(ones(5, 2, 4).double()), "float32", "float64"
    )

    # ------------------------------------------------- linear and friends
    bilinear = nn.Bilinear(3, 4, 2)
    yield shape_case(c, "bilinear-input2", lambda: bilinear(ones(5, 3), ones(5, 5)), (5,), (4,))
    stack = nn.Sequential(nn.Linear(4, 8), nn.Linear(6, 2))
    yield shape_case(
        c, "sequential-linear", lambda: stack(ones(3, 4)), (3, 8), (6, 2), operation="matmul"
    )
    yield shape_case(
        c,
        "functional-linear",
        lambda: fn.linear(ones(3, 4), ones(2, 5)),
        (3, 4),
        (5, 2),
        operation="matmul",
    )
    linear = nn.Linear(4, 2)
    yield dtype_case(c, "linear-half", lambda: linear(ones(3, 4).half()), "float16", "float32")
    yield dtype_case(
        c,
        "linear-bfloat16",
        lambda: linear(ones(3, 4, dtype=torch.bfloat16)),
        "bfloat16",
        "float32",
    )
    unflatten = nn.Unflatten(1, (2, 3))
    yield shape_case(
        c, "unflatten-layer", lambda: unflatten(ones(4, 5)), (5,), (2, 3), operation="reshape"
    )

    # -------------------------------------------------------- normalisation
    group_norm = nn.GroupNorm(3, 6)
    yield shape_case(c, "group-norm-channels", lambda: group_norm(ones(1, 4, 5)), (1, 4, 5))
    batch_norm = nn.BatchNorm2d(3)
    yield shape_case(
        c, "batch-norm2d", lambda: batch_norm(ones(2, 4, 5, 5)), (4,), (3,), operation="normalize"
    )
    yield _case(c, "batch-norm2d-3d", lambda: batch_norm(ones(2, 3, 5)), ShapeError, shapes=())
    layer_norm = nn.LayerNorm((4, 5))
    yield shape_case(
        c,
        "layer-norm-2d",
        lambda: layer_norm(ones(3, 5, 4)),
        (4, 5),
        (3, 5, 4),
        operation="normalize",
    )
    yield _case(
        c, "pixel-shuffle", lambda: nn.PixelShuffle(2)(ones(1, 3, 4, 4)), ShapeError, shapes=()
    )

    # --------------------------------------------- attention and sampling
    attention = nn.MultiheadAttention(8, 2)
    query = ones(4, 1, 6)
    yield shape_case(c, "attention-embed-dim", lambda: attention(query, query, query), (6,), (8,))
    yield shape_case(
        c,
        "sdpa-head-dim",
        lambda: fn.scaled_dot_product_attention(ones(2, 4, 8), ones(2, 4, 6), ones(2, 4, 6)),
        (2, 8),
        (2, 6),
    )
    yield shape_case(
        c,
        "grid-sample-batch",
        lambda: fn.grid_sample(ones(1, 1, 4, 4), ones(2, 3, 3, 2), align_corners=False),
        (1, 1, 4, 4),
        (2, 3, 3, 2),
    )
    yield shape_case(
        c,
        "affine-grid-theta",
        lambda: fn.affine_grid(ones(2, 2, 3), [1, 1, 4, 4], align_corners=False),
        # the base grid [N=1, H*W, 3] meets theta^T [2, 3, 2] in a bmm
        (1, 3),
        (2, 3),
    )
    yield plain_case(c, "one-hot-negative", lambda: fn.one_hot(torch.tensor([-1])))
    yield plain_case(c, "softmax-dim", lambda: fn.softmax(ones(2, 3), dim=3))
    yield plain_case(c, "dropout-probability", lambda: nn.Dropout(2.0))
    yield dtype_case(
        c,
        "softmax-long",
        lambda: fn.softmax(ones(3, dtype=torch.long), 0),
        None,
        "int64",
    )
