"""ONNX operators in torch, for QAT through the graphs mpqc's front end leaves.

A registry maps an op type to a handler: `handler(node, inputs) -> outputs`, inputs as
torch tensors (None for an omitted optional input). Shape arithmetic runs in torch on
int64 tensors read from the live tensors, so it follows the batch. An op without a handler
is refused before training starts (`unsupported`), naming the op and the node."""

from __future__ import annotations

from mpqc.training.ops import elementwise, nn, recurrent, tensor  # noqa: F401  (they register their handlers)
from mpqc.training.ops.registry import OPS, register, run_op, unsupported

__all__ = ["OPS", "register", "run_op", "unsupported"]
