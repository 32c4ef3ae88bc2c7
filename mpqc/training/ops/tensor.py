"""Shape, indexing, movement and reduction ops. Shapes are read from the live tensors, so
shape arithmetic follows whatever batch size is trained."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnx_ir import Node

from mpqc.errors import ModelError
from mpqc.training.ops.registry import Inputs, arg, attr_int, attr_str, int_list, ints, opt, register

__all__: list[str] = []

_I64_MAX = 2**62


@register("Identity")
def _identity(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [arg(node, xs, 0)]


@register("Dropout")
def _dropout(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    return [x, torch.ones_like(x, dtype=torch.bool)][: len(node.outputs)]


@register("Constant")
def _constant(node: Node, xs: Inputs) -> list[torch.Tensor]:
    attribute = node.attributes.get("value")
    if attribute is None:
        raise ModelError(f"Constant {node.name}: only the 'value' form is supported in QAT")
    array = attribute.as_tensor().numpy()
    tensor = torch.from_numpy(array.copy())
    return [tensor.long() if tensor.dtype in (torch.int32, torch.int16, torch.int8, torch.uint8) else tensor]


@register("Reshape")
def _reshape(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, shape = arg(node, xs, 0), int_list(arg(node, xs, 1)) or []
    if not attr_int(node, "allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


@register("Flatten")
def _flatten(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    axis = attr_int(node, "axis", 1) % max(x.ndim, 1) if x.ndim else 0
    lead = 1
    for d in x.shape[:axis]:
        lead *= int(d)
    return [x.reshape(lead, -1)]


@register("Transpose")
def _transpose(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    return [x.permute(*(ints(node, "perm") or list(reversed(range(x.ndim)))))]


def _axes(node: Node, xs: Inputs, index: int = 1) -> list[int] | None:
    given = opt(xs, index)
    return int_list(given) if given is not None else ints(node, "axes")


@register("Squeeze")
def _squeeze(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axes = arg(node, xs, 0), _axes(node, xs)
    if axes is None:
        return [x.squeeze()]
    for a in sorted((a % x.ndim for a in axes), reverse=True):
        x = x.squeeze(a)
    return [x]


@register("Unsqueeze")
def _unsqueeze(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axes = arg(node, xs, 0), _axes(node, xs) or []
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return [x]


@register("Concat")
def _concat(node: Node, xs: Inputs) -> list[torch.Tensor]:
    parts = [x for x in xs if x is not None]
    dtype = parts[0].dtype
    return [torch.cat([p.to(dtype) for p in parts], dim=attr_int(node, "axis", 0))]


@register("Split")
def _split(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axis = arg(node, xs, 0), attr_int(node, "axis", 0)
    sizes = int_list(opt(xs, 1)) or ints(node, "split")
    count = len(node.outputs)
    if not sizes:
        dim = x.shape[axis]
        step = -(-dim // count)  # ceil: the last part may be smaller
        sizes = [min(step, dim - i * step) for i in range(count)]
    return list(torch.split(x, sizes, dim=axis))


@register("Slice")
def _slice(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    starts, ends = int_list(arg(node, xs, 1)) or [], int_list(arg(node, xs, 2)) or []
    axes = int_list(opt(xs, 3)) or list(range(len(starts)))
    steps = int_list(opt(xs, 4)) or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.ndim
        dim = int(x.shape[axis])
        if step == 0:
            raise ModelError(f"Slice {node.name} has a zero step")
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = max(0, min(dim, start)), max(0, min(dim, end))
            x = x.narrow(axis, start, max(0, end - start))[tuple([slice(None)] * axis + [slice(None, None, step)])]
        else:
            start, end = max(-1, min(dim - 1, start)), max(-1, min(dim - 1, end))
            index = torch.arange(start, end, step, device=x.device)
            x = x.index_select(axis, index)
    return [x]


@register("Gather")
def _gather(node: Node, xs: Inputs) -> list[torch.Tensor]:
    data, idx = arg(node, xs, 0), arg(node, xs, 1).long()
    axis = attr_int(node, "axis", 0) % data.ndim
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    picked = torch.index_select(data, axis, idx.reshape(-1))
    return [picked.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :]))]


@register("GatherElements")
def _gather_elements(node: Node, xs: Inputs) -> list[torch.Tensor]:
    data, idx = arg(node, xs, 0), arg(node, xs, 1).long()
    axis = attr_int(node, "axis", 0) % data.ndim
    return [torch.gather(data, axis, torch.where(idx < 0, idx + data.shape[axis], idx))]


@register("GatherND")
def _gather_nd(node: Node, xs: Inputs) -> list[torch.Tensor]:
    data, idx = arg(node, xs, 0), arg(node, xs, 1).long()
    if attr_int(node, "batch_dims", 0):
        raise ModelError(f"GatherND with batch_dims (node {node.name}) is not supported in QAT")
    depth = idx.shape[-1]
    flat = idx.reshape(-1, depth)
    picked = data[tuple(flat[:, i] for i in range(depth))]
    return [picked.reshape((*idx.shape[:-1], *data.shape[depth:]))]


@register("ScatterND")
def _scatter_nd(node: Node, xs: Inputs) -> list[torch.Tensor]:
    data, idx, updates = arg(node, xs, 0), arg(node, xs, 1).long(), arg(node, xs, 2)
    depth = idx.shape[-1]
    flat = idx.reshape(-1, depth)
    out = data.clone()
    out[tuple(flat[:, i] for i in range(depth))] = updates.reshape(-1, *data.shape[depth:])
    return [out]


@register("Expand")
def _expand(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, shape = arg(node, xs, 0), int_list(arg(node, xs, 1)) or []
    return [x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape)))]


@register("Tile")
def _tile(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [arg(node, xs, 0).repeat(tuple(int_list(arg(node, xs, 1)) or []))]


@register("Pad")
def _pad(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, pads = arg(node, xs, 0), int_list(arg(node, xs, 1)) or []
    value = opt(xs, 2)
    axes = [a % x.ndim for a in (int_list(opt(xs, 3)) or list(range(x.ndim)))]
    half = len(pads) // 2
    begin = dict(zip(axes, pads[:half]))
    end = dict(zip(axes, pads[half:]))
    flat: list[int] = []
    for axis in reversed(range(x.ndim)):
        flat += [begin.get(axis, 0), end.get(axis, 0)]
    mode = attr_str(node, "mode", "constant")
    if mode == "constant":
        fill = float(value.reshape(-1)[0]) if value is not None and value.numel() else 0.0
        return [F.pad(x, flat, value=fill)]
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    padded = max((i // 2 + 1 for i, p in enumerate(flat) if p), default=0)  # trailing dims that are padded
    dims = max(padded, x.ndim - 2, 1)  # torch pads the last ndim-1 or ndim-2 dims in these modes
    if torch_mode is None or dims > min(3, x.ndim - 1):
        raise ModelError(f"Pad mode {mode} on these axes (node {node.name}) is not supported in QAT")
    flat = flat[: 2 * dims]
    return [F.pad(x, flat, mode=torch_mode)]


@register("Shape")
def _shape(node: Node, xs: Inputs) -> list[torch.Tensor]:
    dims = list(arg(node, xs, 0).shape)
    start, end = attr_int(node, "start", 0), node.attributes.get_int("end", len(dims))
    return [torch.tensor(dims[start:end], dtype=torch.int64)]


@register("Size")
def _size(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [torch.tensor(arg(node, xs, 0).numel(), dtype=torch.int64)]


@register("ConstantOfShape")
def _constant_of_shape(node: Node, xs: Inputs) -> list[torch.Tensor]:
    shape = int_list(arg(node, xs, 0)) or []
    attribute = node.attributes.get("value")
    if attribute is None:
        return [torch.zeros(shape, dtype=torch.float32)]
    value = torch.from_numpy(attribute.as_tensor().numpy().copy()).reshape(-1)[0]
    return [torch.full(shape, value.item(), dtype=value.dtype)]


@register("Range")
def _range(node: Node, xs: Inputs) -> list[torch.Tensor]:
    start, limit, delta = (arg(node, xs, i) for i in range(3))
    return [torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)]


@register("Einsum")
def _einsum(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [torch.einsum(attr_str(node, "equation", ""), *[x for x in xs if x is not None])]


@register("CumSum")
def _cumsum(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axis = arg(node, xs, 0), int(arg(node, xs, 1).item())
    if attr_int(node, "reverse", 0):
        x = x.flip(axis)
    out = torch.cumsum(x, dim=axis)
    if attr_int(node, "exclusive", 0):
        out = out - x
    return [out.flip(axis) if attr_int(node, "reverse", 0) else out]


@register("TopK")
def _topk(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, k = arg(node, xs, 0), int(arg(node, xs, 1).reshape(-1)[0].item())
    values, indices = torch.topk(
        x, k, dim=attr_int(node, "axis", -1), largest=bool(attr_int(node, "largest", 1)), sorted=True
    )
    return [values, indices]


@register("ArgMax", "ArgMin")
def _arg(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axis = arg(node, xs, 0), attr_int(node, "axis", 0)
    keep = bool(attr_int(node, "keepdims", 1))
    if attr_int(node, "select_last_index", 0):
        flipped = x.flip(axis)
        found = flipped.argmax(axis, keepdim=keep) if node.op_type == "ArgMax" else flipped.argmin(axis, keepdim=keep)
        return [x.shape[axis] - 1 - found]
    return [x.argmax(axis, keepdim=keep) if node.op_type == "ArgMax" else x.argmin(axis, keepdim=keep)]


_REDUCE = {
    "ReduceMean": lambda x, d, k: x.mean(dim=d, keepdim=k),
    "ReduceSum": lambda x, d, k: x.sum(dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: x.amax(dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: x.amin(dim=d, keepdim=k),
    "ReduceProd": lambda x, d, k: _prod(x, d, k),
    "ReduceL1": lambda x, d, k: x.abs().sum(dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: x.square().sum(dim=d, keepdim=k).sqrt(),
    "ReduceSumSquare": lambda x, d, k: x.square().sum(dim=d, keepdim=k),
    "ReduceLogSum": lambda x, d, k: x.sum(dim=d, keepdim=k).log(),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}


def _prod(x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    for d in sorted((d % x.ndim for d in dims), reverse=True):
        x = x.prod(dim=d, keepdim=keep)
    return x


def _reduce(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axes = arg(node, xs, 0), _axes(node, xs)
    keep = bool(attr_int(node, "keepdims", 1))
    if not axes:
        if attr_int(node, "noop_with_empty_axes", 0):
            return [x]
        axes = list(range(x.ndim))
    return [_REDUCE[node.op_type](x, axes, keep)]


register(*_REDUCE)(_reduce)


@register("NonZero")
def _nonzero(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [torch.nonzero(arg(node, xs, 0)).T.contiguous()]


@register("OneHot")
def _one_hot(node: Node, xs: Inputs) -> list[torch.Tensor]:
    indices, depth, values = arg(node, xs, 0).long(), int(arg(node, xs, 1).reshape(-1)[0].item()), arg(node, xs, 2)
    indices = torch.where(indices < 0, indices + depth, indices)
    hot = F.one_hot(indices, depth).movedim(-1, attr_int(node, "axis", -1))
    off, on = values.reshape(-1)[0], values.reshape(-1)[1]
    return [torch.where(hot.bool(), on, off)]


@register("Trilu")
def _trilu(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, offset = arg(node, xs, 0), opt(xs, 1)
    k = int(offset.item()) if offset is not None else 0
    return [torch.triu(x, k) if attr_int(node, "upper", 1) else torch.tril(x, k)]
