"""The op registry and the typed helpers every handler uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import onnx_ir as ir
import torch

from mpqc.errors import ModelError

__all__ = ["OPS", "Op", "Inputs", "register", "run_op", "unsupported", "arg", "opt", "ints", "attr_int", "attr_float"]

Inputs = Sequence[torch.Tensor | None]
Op = Callable[[ir.Node, Inputs], list[torch.Tensor]]
OPS: dict[str, Op] = {}
#: ops that need nothing but their inputs passed through or values from the graph itself
PASS_THROUGH = frozenset({"Identity", "Dropout"})


def register(*names: str) -> Callable[[Op], Op]:
    """Decorator: the handler runs the named op types."""

    def add(fn: Op) -> Op:
        for name in names:
            OPS[name] = fn
        return fn

    return add


def run_op(node: ir.Node, inputs: Inputs) -> list[torch.Tensor]:
    """Run one node; an op without a handler is a `ModelError` naming it."""
    op = OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if op is None:
        raise ModelError(f"QAT cannot train through op {node.op_type} (node {node.name}); it has no torch form here")
    return op(node, inputs)


def unsupported(nodes: Iterable[ir.Node]) -> list[ir.Node]:
    """Nodes QAT cannot run, found before any training starts."""
    return [n for n in nodes if n.domain not in ("", "ai.onnx") or n.op_type not in OPS]


def arg(node: ir.Node, xs: Inputs, index: int) -> torch.Tensor:
    """A required input."""
    value = xs[index] if index < len(xs) else None
    if value is None:
        raise ModelError(f"node {node.name} ({node.op_type}) lacks its input {index}")
    return value


def opt(xs: Inputs, index: int) -> torch.Tensor | None:
    """An optional input (None when omitted)."""
    return xs[index] if index < len(xs) else None


def ints(node: ir.Node, name: str, default: list[int] | None = None) -> list[int] | None:
    """An integer-list attribute, or `default`."""
    attribute = node.attributes.get(name)
    return [int(v) for v in attribute.as_ints()] if attribute is not None else default


def attr_int(node: ir.Node, name: str, default: int) -> int:
    """An integer attribute, or `default`."""
    return int(node.attributes.get_int(name, default))


def attr_float(node: ir.Node, name: str, default: float) -> float:
    """A float attribute, or `default`."""
    return float(node.attributes.get_float(name, default))


def attr_str(node: ir.Node, name: str, default: str) -> str:
    return str(node.attributes.get_string(name, default))


def int_list(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]
