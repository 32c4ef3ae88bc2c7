"""Layers, pooling, normalization, activations and resampling (opset 21 semantics: the
front end upgrades every model there)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnx_ir import Node

from mpqc.errors import ModelError
from mpqc.training.ops.registry import Inputs, arg, attr_float, attr_int, attr_str, int_list, ints, opt, register

__all__: list[str] = []

_CONV = (F.conv1d, F.conv2d, F.conv3d)
_CONV_T = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)


def _pads(node: Node, spatial: int) -> tuple[list[int], list[int]]:
    auto = attr_str(node, "auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        raise ModelError(f"auto_pad={auto} in node {node.name} is not supported in QAT")
    pads = ints(node, "pads") or [0] * (2 * spatial)
    return pads[:spatial], pads[spatial:]


def _pad_input(x: torch.Tensor, begin: list[int], end: list[int], value: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """Symmetric pads go to the op; asymmetric ones are applied here."""
    if begin == end:
        return x, begin
    flat: list[int] = []
    for b, e in reversed(list(zip(begin, end))):
        flat += [b, e]
    return F.pad(x, flat, value=value), [0] * len(begin)


@register("Conv")
def _conv(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, w, b = arg(node, xs, 0), arg(node, xs, 1), opt(xs, 2)
    spatial = w.ndim - 2
    begin, end = _pads(node, spatial)
    x, pad = _pad_input(x, begin, end)
    return [
        _CONV[spatial - 1](
            x,
            w,
            b,
            stride=ints(node, "strides") or [1] * spatial,
            padding=pad,
            dilation=ints(node, "dilations") or [1] * spatial,
            groups=attr_int(node, "group", 1),
        )
    ]


@register("ConvTranspose")
def _conv_transpose(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, w, b = arg(node, xs, 0), arg(node, xs, 1), opt(xs, 2)
    spatial = w.ndim - 2
    begin, end = _pads(node, spatial)
    if begin != end:
        raise ModelError(f"asymmetric pads in ConvTranspose {node.name} are not supported in QAT")
    return [
        _CONV_T[spatial - 1](
            x,
            w,
            b,
            stride=ints(node, "strides") or [1] * spatial,
            padding=begin,
            output_padding=ints(node, "output_padding") or [0] * spatial,
            groups=attr_int(node, "group", 1),
            dilation=ints(node, "dilations") or [1] * spatial,
        )
    ]


@register("Gemm")
def _gemm(node: Node, xs: Inputs) -> list[torch.Tensor]:
    a, b, c = arg(node, xs, 0), arg(node, xs, 1), opt(xs, 2)
    if attr_int(node, "transA", 0):
        a = a.transpose(-1, -2)
    if attr_int(node, "transB", 0):
        b = b.transpose(-1, -2)
    y = attr_float(node, "alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + attr_float(node, "beta", 1.0) * c
    return [y]


@register("MatMul")
def _matmul(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [arg(node, xs, 0) @ arg(node, xs, 1)]


@register("MaxPool", "AveragePool")
def _pool(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    kernel = ints(node, "kernel_shape") or []
    spatial = len(kernel)
    begin, end = _pads(node, spatial)
    strides = ints(node, "strides") or [1] * spatial
    ceil = bool(attr_int(node, "ceil_mode", 0))
    if node.op_type == "MaxPool":
        x, pad = _pad_input(x, begin, end, value=float("-inf"))
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
        dilation = ints(node, "dilations") or [1] * spatial
        return [pool(x, kernel, strides, pad, dilation=dilation, ceil_mode=ceil)]
    include = bool(attr_int(node, "count_include_pad", 0))
    if include:
        x, pad = _pad_input(x, begin, end)
    elif begin != end:
        raise ModelError(f"asymmetric pads in AveragePool {node.name} are not supported in QAT")
    else:
        pad = begin
    avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
    return [avg(x, kernel, strides, pad, ceil_mode=ceil, count_include_pad=include)]


@register("GlobalAveragePool")
def _gap(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    return [x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)]


@register("GlobalMaxPool")
def _gmp(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    return [x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)]


@register("BatchNormalization")
def _batchnorm(node: Node, xs: Inputs) -> list[torch.Tensor]:
    """Inference form: running statistics stay fixed (pretrained statistics are kept)."""
    x, scale, bias, mean, var = (arg(node, xs, i) for i in range(5))
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, attr_float(node, "epsilon", 1e-5))]


@register("LayerNormalization")
def _layer_norm(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, scale, bias = arg(node, xs, 0), arg(node, xs, 1), opt(xs, 2)
    axis = attr_int(node, "axis", -1) % x.ndim
    return [F.layer_norm(x, tuple(x.shape[axis:]), scale, bias, attr_float(node, "epsilon", 1e-5))]


@register("InstanceNormalization")
def _instance_norm(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, scale, bias = arg(node, xs, 0), arg(node, xs, 1), arg(node, xs, 2)
    return [F.instance_norm(x, weight=scale, bias=bias, eps=attr_float(node, "epsilon", 1e-5))]


@register("GroupNormalization")
def _group_norm(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, scale, bias = arg(node, xs, 0), arg(node, xs, 1), arg(node, xs, 2)
    groups = attr_int(node, "num_groups", 1)
    channels = x.shape[1]
    if scale.numel() == groups and groups != channels:  # opset 18: one scale per group
        scale = scale.repeat_interleave(channels // groups)
        bias = bias.repeat_interleave(channels // groups)
    return [F.group_norm(x, groups, scale, bias, attr_float(node, "epsilon", 1e-5))]


@register("Softmax", "LogSoftmax", "Hardmax")
def _softmax(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, axis = arg(node, xs, 0), attr_int(node, "axis", -1)
    if node.op_type == "Softmax":
        return [torch.softmax(x, dim=axis)]
    if node.op_type == "LogSoftmax":
        return [torch.log_softmax(x, dim=axis)]
    return [F.one_hot(x.argmax(dim=axis), x.shape[axis]).movedim(-1, axis).to(x.dtype)]


@register("Attention")
def _attention(node: Node, xs: Inputs) -> list[torch.Tensor]:
    """ONNX Attention (opset 23): 3-D inputs split into heads by the attributes, or 4-D;
    a boolean mask keeps True, a float mask is added. A query whose keys are all masked out
    (False, or a float mask at the dtype's lowest value or -inf) gets zeros, as ONNX
    Runtime's kernel gives; no KV cache, no softcap."""
    q, k, v, mask = arg(node, xs, 0), arg(node, xs, 1), arg(node, xs, 2), opt(xs, 3)
    if opt(xs, 4) is not None or opt(xs, 5) is not None or attr_float(node, "softcap", 0.0) != 0.0:
        raise ModelError(f"Attention node {node.name}: a KV cache or softcap is not supported in QAT")
    if attr_int(node, "qk_matmul_output_mode", 0) != 0:
        raise ModelError(f"Attention node {node.name}: qk_matmul_output_mode is not supported in QAT")
    three_d = q.ndim == 3
    if three_d:
        q_heads, kv_heads = attr_int(node, "q_num_heads", 0), attr_int(node, "kv_num_heads", 0)
        if q_heads < 1 or kv_heads < 1:
            raise ModelError(f"Attention node {node.name}: 3-D inputs need q_num_heads and kv_num_heads")
        q = q.reshape(q.shape[0], q.shape[1], q_heads, -1).transpose(1, 2)
        k = k.reshape(k.shape[0], k.shape[1], kv_heads, -1).transpose(1, 2)
        v = v.reshape(v.shape[0], v.shape[1], kv_heads, -1).transpose(1, 2)
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each KV head serves a group of Q heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scale = attr_float(node, "scale", 0.0) or q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    lowest = torch.finfo(scores.dtype).min
    masked = torch.zeros((), dtype=torch.bool, device=scores.device)
    if mask is not None:
        masked = ~mask if mask.dtype == torch.bool else mask <= lowest
        scores = scores.masked_fill(masked, lowest) if mask.dtype == torch.bool else scores + mask.clamp(min=lowest)
    if attr_int(node, "is_causal", 0):
        s, t = scores.shape[-2], scores.shape[-1]
        future = ~torch.ones(s, t, dtype=torch.bool, device=scores.device).tril(t - s)
        scores = scores.masked_fill(future, lowest)
        masked = masked | future
    probs = torch.softmax(scores.clamp(min=lowest), dim=-1)
    probs = probs.masked_fill(masked.expand_as(probs).all(dim=-1, keepdim=True), 0.0)
    out = torch.matmul(probs, v)
    if three_d:
        out = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)
    return [out]


_ACTIVATIONS = {
    "Relu": lambda n, x: F.relu(x),
    "Sigmoid": lambda n, x: torch.sigmoid(x),
    "Tanh": lambda n, x: torch.tanh(x),
    "LeakyRelu": lambda n, x: F.leaky_relu(x, attr_float(n, "alpha", 0.01)),
    "Elu": lambda n, x: F.elu(x, attr_float(n, "alpha", 1.0)),
    "Celu": lambda n, x: F.celu(x, attr_float(n, "alpha", 1.0)),
    "Selu": lambda n, x: (
        attr_float(n, "gamma", 1.0507009873554805)
        * torch.where(x > 0, x, attr_float(n, "alpha", 1.6732632423543772) * (torch.exp(x) - 1))
    ),
    "HardSigmoid": lambda n, x: torch.clamp(attr_float(n, "alpha", 0.2) * x + attr_float(n, "beta", 0.5), 0, 1),
    "HardSwish": lambda n, x: F.hardswish(x),
    "Softplus": lambda n, x: F.softplus(x),
    "Softsign": lambda n, x: F.softsign(x),
    "Mish": lambda n, x: F.mish(x),
    "ThresholdedRelu": lambda n, x: torch.where(x > attr_float(n, "alpha", 1.0), x, torch.zeros_like(x)),
    "Gelu": lambda n, x: F.gelu(x, approximate="tanh" if attr_str(n, "approximate", "none") == "tanh" else "none"),
}


def _activation(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [_ACTIVATIONS[node.op_type](node, arg(node, xs, 0))]


register(*_ACTIVATIONS)(_activation)


@register("PRelu")
def _prelu(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, slope = arg(node, xs, 0), arg(node, xs, 1)
    return [torch.where(x >= 0, x, x * slope)]


@register("Clip")
def _clip(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [torch.clamp(arg(node, xs, 0), opt(xs, 1), opt(xs, 2))]


@register("Resize", "Upsample")
def _resize(node: Node, xs: Inputs) -> list[torch.Tensor]:
    """Nearest by exact index arithmetic (every coordinate mode and rounding rule); linear
    through torch for the half-pixel and align-corners modes."""
    x = arg(node, xs, 0)
    scales_t = opt(xs, 2) if node.op_type == "Resize" else opt(xs, 1)
    sizes_t = opt(xs, 3) if node.op_type == "Resize" else None
    axes = ints(node, "axes") or list(range(x.ndim))
    sizes = int_list(sizes_t) if sizes_t is not None and sizes_t.numel() else None
    scales = [float(s) for s in scales_t.reshape(-1).tolist()] if scales_t is not None and scales_t.numel() else None
    in_shape = list(x.shape)
    out_shape = list(in_shape)
    factor = [1.0] * x.ndim
    for i, axis in enumerate(axes):
        if sizes is not None:
            out_shape[axis] = sizes[i]
            factor[axis] = sizes[i] / in_shape[axis]
        elif scales is not None:
            out_shape[axis] = int(in_shape[axis] * scales[i])
            factor[axis] = scales[i]
    mode = attr_str(node, "mode", "nearest")
    transform = attr_str(node, "coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        rounding = attr_str(node, "nearest_mode", "round_prefer_floor")
        for axis in range(x.ndim):
            if out_shape[axis] != in_shape[axis]:
                index = _nearest_index(in_shape[axis], out_shape[axis], factor[axis], transform, rounding, x.device)
                x = x.index_select(axis, index)
        return [x]
    if mode == "linear" and transform in ("half_pixel", "align_corners", "pytorch_half_pixel") and x.ndim in (3, 4, 5):
        kind = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.ndim]
        return [F.interpolate(x, size=out_shape[2:], mode=kind, align_corners=transform == "align_corners")]
    raise ModelError(f"Resize mode {mode} with {transform} (node {node.name}) is not supported in QAT")


def _nearest_index(
    n_in: int, n_out: int, scale: float, transform: str, rounding: str, device: torch.device
) -> torch.Tensor:
    out = torch.arange(n_out, dtype=torch.float64)
    if transform == "asymmetric":
        src = out / scale
    elif transform == "align_corners":
        src = out * (n_in - 1) / max(n_out - 1, 1)
    elif transform == "pytorch_half_pixel" and n_out == 1:
        src = torch.zeros_like(out)
    elif transform in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        src = (out + 0.5) / scale - 0.5
    else:
        raise ModelError(f"Resize coordinate mode {transform} is not supported in QAT")
    if rounding == "floor":
        idx = torch.floor(src)
    elif rounding == "ceil":
        idx = torch.ceil(src)
    elif rounding == "round_prefer_ceil":
        idx = torch.floor(src + 0.5)
    else:  # round_prefer_floor
        idx = torch.ceil(src - 0.5)
    return idx.clamp(0, n_in - 1).long().to(device)


@register("DepthToSpace", "SpaceToDepth")
def _depth_space(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, block = arg(node, xs, 0), attr_int(node, "blocksize", 1)
    if node.op_type == "SpaceToDepth":
        return [F.pixel_unshuffle(x, block)]
    if attr_str(node, "mode", "DCR") == "CRD":
        return [F.pixel_shuffle(x, block)]
    n, c, h, w = x.shape
    y = x.reshape(n, block, block, c // (block * block), h, w).permute(0, 3, 4, 1, 5, 2)
    return [y.reshape(n, c // (block * block), h * block, w * block)]
