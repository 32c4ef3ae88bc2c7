"""ONNX operators in torch, for the ops mpqc's front end leaves in a model. Each takes the
node and its input tensors (None for an omitted optional input) and returns its outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx_ir as ir
import torch
import torch.nn.functional as F

from mpqc.errors import MpqcError

__all__ = ["OPS", "run_op"]

Op = Callable[[ir.Node, Sequence[torch.Tensor | None]], list[torch.Tensor]]


def _ints(node: ir.Node, name: str, default: list[int] | None = None) -> list[int] | None:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else default


def _int(node: ir.Node, name: str, default: int) -> int:
    return node.attributes.get_int(name, default)


def _float(node: ir.Node, name: str, default: float) -> float:
    return node.attributes.get_float(name, default)


def _pads(node: ir.Node, spatial: int) -> tuple[list[int], list[int]]:
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise MpqcError(
            f"auto_pad={node.attributes.get_string('auto_pad')} in node {node.name} is not supported in QAT"
        )
    pads = _ints(node, "pads", [0] * (2 * spatial)) or [0] * (2 * spatial)
    return pads[:spatial], pads[spatial:]


def _pad_input(x: torch.Tensor, begin: list[int], end: list[int], value: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """Symmetric pads go to the op; asymmetric ones are applied here."""
    if begin == end:
        return x, begin
    flat: list[int] = []
    for b, e in reversed(list(zip(begin, end))):
        flat += [b, e]
    return F.pad(x, flat, value=value), [0] * len(begin)


def _conv(node, xs):
    x, w, b = xs[0], xs[1], xs[2] if len(xs) > 2 else None
    spatial = w.ndim - 2
    begin, end = _pads(node, spatial)
    x, pad = _pad_input(x, begin, end)
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    return [
        conv(
            x,
            w,
            b,
            stride=_ints(node, "strides", [1] * spatial),
            padding=pad,
            dilation=_ints(node, "dilations", [1] * spatial),
            groups=_int(node, "group", 1),
        )
    ]


def _conv_transpose(node, xs):
    x, w, b = xs[0], xs[1], xs[2] if len(xs) > 2 else None
    spatial = w.ndim - 2
    begin, end = _pads(node, spatial)
    if begin != end:
        raise MpqcError(f"asymmetric pads in ConvTranspose {node.name} are not supported in QAT")
    conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[spatial - 1]
    return [
        conv(
            x,
            w,
            b,
            stride=_ints(node, "strides", [1] * spatial),
            padding=begin,
            output_padding=_ints(node, "output_padding", [0] * spatial),
            groups=_int(node, "group", 1),
            dilation=_ints(node, "dilations", [1] * spatial),
        )
    ]


def _gemm(node, xs):
    a, b, c = xs[0], xs[1], xs[2] if len(xs) > 2 else None
    if _int(node, "transA", 0):
        a = a.transpose(-1, -2)
    if _int(node, "transB", 0):
        b = b.transpose(-1, -2)
    y = _float(node, "alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + _float(node, "beta", 1.0) * c
    return [y]


def _pool(kind: str):
    def run(node, xs):
        x = xs[0]
        kernel = _ints(node, "kernel_shape")
        spatial = len(kernel)
        begin, end = _pads(node, spatial)
        strides = _ints(node, "strides", [1] * spatial)
        if kind == "max":
            x, pad = _pad_input(x, begin, end, value=float("-inf"))
            f = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
            return [
                f(
                    x,
                    kernel,
                    strides,
                    pad,
                    dilation=_ints(node, "dilations", [1] * spatial),
                    ceil_mode=bool(_int(node, "ceil_mode", 0)),
                )
            ]
        include = bool(_int(node, "count_include_pad", 0))
        x, pad = _pad_input(x, begin, end) if include else (x, begin)
        if not include and begin != end:
            raise MpqcError(f"asymmetric pads in AveragePool {node.name} are not supported in QAT")
        f = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
        return [f(x, kernel, strides, pad, ceil_mode=bool(_int(node, "ceil_mode", 0)), count_include_pad=include)]

    return run


def _reshape(node, xs):
    x, shape = xs[0], [int(d) for d in xs[1].tolist()]
    if not _int(node, "allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


def _flatten(node, xs):
    x = xs[0]
    axis = _int(node, "axis", 1) % max(x.ndim, 1)
    return [x.reshape(int(torch.tensor(x.shape[:axis]).prod()) if axis else 1, -1)]


def _axes(node, xs, index: int = 1) -> list[int] | None:
    if len(xs) > index and xs[index] is not None:
        return [int(a) for a in xs[index].tolist()]
    return _ints(node, "axes")


def _squeeze(node, xs):
    axes = _axes(node, xs)
    x = xs[0]
    if axes is None:
        return [x.squeeze()]
    for a in sorted((a % x.ndim for a in axes), reverse=True):
        x = x.squeeze(a)
    return [x]


def _unsqueeze(node, xs):
    x = xs[0]
    axes = _axes(node, xs) or []
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return [x]


def _reduce(fn):
    def run(node, xs):
        axes = _axes(node, xs)
        keep = bool(_int(node, "keepdims", 1))
        if axes is None or not axes:
            if _int(node, "noop_with_empty_axes", 0):
                return [xs[0]]
            axes = list(range(xs[0].ndim))
        return [fn(xs[0], dim=axes, keepdim=keep)]

    return run


def _layer_norm(node, xs):
    x, scale, bias = xs[0], xs[1], xs[2] if len(xs) > 2 else None
    axis = _int(node, "axis", -1) % x.ndim
    return [F.layer_norm(x, x.shape[axis:], scale, bias, _float(node, "epsilon", 1e-5))]


def _gelu(node, xs):
    return [
        F.gelu(xs[0], approximate="tanh" if node.attributes.get_string("approximate", "none") == "tanh" else "none")
    ]


def _clip(node, xs):
    lo = xs[1] if len(xs) > 1 and xs[1] is not None else None
    hi = xs[2] if len(xs) > 2 and xs[2] is not None else None
    return [torch.clamp(xs[0], lo, hi)]


def _prelu(node, xs):
    x, slope = xs[0], xs[1]
    return [torch.where(x >= 0, x, x * slope)]


def _gather(node, xs):
    data, idx = xs[0], xs[1].long()
    axis = _int(node, "axis", 0) % data.ndim
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    return [
        torch.index_select(data, axis, idx.reshape(-1)).reshape(*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :])
    ]


def _slice(node, xs):
    x = xs[0]
    starts, ends = xs[1].tolist(), xs[2].tolist()
    axes = xs[3].tolist() if len(xs) > 3 and xs[3] is not None else list(range(len(starts)))
    steps = xs[4].tolist() if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st <= 0:
            raise MpqcError(f"negative Slice steps in {node.name} are not supported in QAT")
        dim = x.shape[a]
        s = max(0, min(dim, s + dim if s < 0 else s))
        e = max(0, min(dim, e + dim if e < 0 else e))
        index[a] = slice(s, e, st)
    return [x[tuple(index)]]


def _batchnorm(node, xs):
    x, scale, bias, mean, var = xs[:5]
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, _float(node, "epsilon", 1e-5))]


OPS: dict[str, Op] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MatMul": lambda n, xs: [xs[0] @ xs[1]],
    "Relu": lambda n, xs: [F.relu(xs[0])],
    "LeakyRelu": lambda n, xs: [F.leaky_relu(xs[0], _float(n, "alpha", 0.01))],
    "PRelu": _prelu,
    "Sigmoid": lambda n, xs: [torch.sigmoid(xs[0])],
    "Tanh": lambda n, xs: [torch.tanh(xs[0])],
    "HardSigmoid": lambda n, xs: [torch.clamp(_float(n, "alpha", 0.2) * xs[0] + _float(n, "beta", 0.5), 0, 1)],
    "HardSwish": lambda n, xs: [F.hardswish(xs[0])],
    "Gelu": _gelu,
    "Erf": lambda n, xs: [torch.erf(xs[0])],
    "Clip": _clip,
    "Add": lambda n, xs: [xs[0] + xs[1]],
    "Sub": lambda n, xs: [xs[0] - xs[1]],
    "Mul": lambda n, xs: [xs[0] * xs[1]],
    "Div": lambda n, xs: [xs[0] / xs[1]],
    "Pow": lambda n, xs: [torch.pow(xs[0], xs[1])],
    "Sqrt": lambda n, xs: [torch.sqrt(xs[0])],
    "Exp": lambda n, xs: [torch.exp(xs[0])],
    "Neg": lambda n, xs: [-xs[0]],
    "Identity": lambda n, xs: [xs[0]],
    "Dropout": lambda n, xs: [xs[0]],
    "GlobalAveragePool": lambda n, xs: [xs[0].mean(dim=tuple(range(2, xs[0].ndim)), keepdim=True)],
    "GlobalMaxPool": lambda n, xs: [xs[0].amax(dim=tuple(range(2, xs[0].ndim)), keepdim=True)],
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": lambda n, xs: [xs[0].permute(*(_ints(n, "perm") or list(reversed(range(xs[0].ndim)))))],
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda n, xs: [torch.cat([x for x in xs if x is not None], dim=_int(n, "axis", 0))],
    "Softmax": lambda n, xs: [torch.softmax(xs[0], dim=_int(n, "axis", -1))],
    "LogSoftmax": lambda n, xs: [torch.log_softmax(xs[0], dim=_int(n, "axis", -1))],
    "LayerNormalization": _layer_norm,
    "BatchNormalization": _batchnorm,
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax),
    "Gather": _gather,
    "Slice": _slice,
    "Shape": lambda n, xs: [torch.tensor(list(xs[0].shape), dtype=torch.int64)],
    "Cast": lambda n, xs: [xs[0].to(torch.float32 if _int(n, "to", 1) == 1 else torch.int64)],
}


def run_op(node: ir.Node, inputs: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    op = OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if op is None:
        raise MpqcError(f"QAT cannot train through op {node.op_type} (node {node.name}); it has no torch form here")
    return op(node, inputs)
