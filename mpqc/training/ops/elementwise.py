"""Elementwise arithmetic, comparisons, logic and casts (numpy broadcasting, as ONNX)."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import torch
from onnx_ir import Node

from mpqc.errors import ModelError
from mpqc.training.ops.registry import Inputs, arg, attr_int, register

__all__ = ["TORCH_DTYPES"]

#: ONNX TensorProto data types -> torch dtypes
TORCH_DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}

_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Sqrt": torch.sqrt,
    "Exp": torch.exp,
    "Log": torch.log,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Round": torch.round,  # half to even, as ONNX
    "Sign": torch.sign,
    "Reciprocal": torch.reciprocal,
    "Erf": torch.erf,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Atan": torch.atan,
    "Not": torch.logical_not,
    "IsNaN": torch.isnan,
}

_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Pow": torch.pow,
    "Equal": torch.eq,
    "Less": torch.lt,
    "Greater": torch.gt,
    "LessOrEqual": torch.le,
    "GreaterOrEqual": torch.ge,
    "And": torch.logical_and,
    "Or": torch.logical_or,
    "Xor": torch.logical_xor,
}

_VARIADIC: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Min": torch.minimum,
    "Max": torch.maximum,
    "Sum": torch.add,
}


def _unary(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [_UNARY[node.op_type](arg(node, xs, 0))]


def _binary(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [_BINARY[node.op_type](arg(node, xs, 0), arg(node, xs, 1))]


def _variadic(node: Node, xs: Inputs) -> list[torch.Tensor]:
    present = [x for x in xs if x is not None]
    return [reduce(_VARIADIC[node.op_type], present)]


register(*_UNARY)(_unary)
register(*_BINARY)(_binary)
register(*_VARIADIC)(_variadic)


@register("Div")
def _div(node: Node, xs: Inputs) -> list[torch.Tensor]:
    a, b = arg(node, xs, 0), arg(node, xs, 1)
    if not a.is_floating_point() and not b.is_floating_point():
        return [torch.div(a, b, rounding_mode="trunc")]  # integer division truncates, as ONNX Runtime
    return [a / b]


@register("Mod")
def _mod(node: Node, xs: Inputs) -> list[torch.Tensor]:
    a, b = arg(node, xs, 0), arg(node, xs, 1)
    return [torch.fmod(a, b) if attr_int(node, "fmod", 0) else torch.remainder(a, b)]


@register("Mean")
def _mean(node: Node, xs: Inputs) -> list[torch.Tensor]:
    present = [x for x in xs if x is not None]
    return [reduce(torch.add, present) / len(present)]


@register("Where")
def _where(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [torch.where(arg(node, xs, 0).bool(), arg(node, xs, 1), arg(node, xs, 2))]


@register("IsInf")
def _isinf(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x = arg(node, xs, 0)
    pos, neg = attr_int(node, "detect_positive", 1), attr_int(node, "detect_negative", 1)
    return [(torch.isposinf(x) & bool(pos)) | (torch.isneginf(x) & bool(neg))]


@register("Cast")
def _cast(node: Node, xs: Inputs) -> list[torch.Tensor]:
    to = attr_int(node, "to", 1)
    if to not in TORCH_DTYPES:
        raise ModelError(f"Cast to ONNX type {to} (node {node.name}) is not supported in QAT")
    return [arg(node, xs, 0).to(TORCH_DTYPES[to])]


@register("CastLike")
def _cast_like(node: Node, xs: Inputs) -> list[torch.Tensor]:
    return [arg(node, xs, 0).to(arg(node, xs, 1).dtype)]
