"""Fake quantization with a learnable scale (LSQ, Esser et al. 2020): round with a
straight-through gradient, saturate to the integer range, and learn the step size with
the gradient scaled by 1/sqrt(elements x qmax).

The quantize-dequantize step is one autograd function with its gradients written out
(LSQ's), not a chain of tensor operations: the chain (divide, round, detach, add, clamp,
subtract, multiply) kept seven full-size intermediates per quantizer and cost more than
the convolutions themselves (two thirds of a forward pass on the kit's MobileNet); the
function takes half the time of the chain, forward and backward together."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["FakeQuant", "dynamic_fake_quant", "fake_quant"]


class _QuantDequant(torch.autograd.Function):
    """(clamp(round(x / s) + zp, qmin, qmax) - zp) * s with LSQ's straight-through
    gradients: d/dx is 1 where the rounded level lies in range, else 0; d/ds is
    round(x/s) - x/s in range, else the saturated level - zp. The forward pass keeps the
    in-range mask and the per-element d/ds (when the scale learns), so the backward pass is
    two multiplications and a sum."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
        shifted = bool(zp.any())
        v = x / scale
        level = torch.round(v)
        if shifted:
            level += zp
        q = level.clamp(qmin, qmax)
        inside = q == level
        if shifted:
            q -= zp
        ctx.scale_shape = scale.shape
        if ctx.needs_input_grad[1]:
            v.mul_(inside)
            ctx.save_for_backward(inside, torch.sub(q, v, out=v))
        else:
            ctx.save_for_backward(inside)
        return q.mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        grad_x = grad * saved[0] if ctx.needs_input_grad[0] else None
        grad_s = (grad * saved[1]).sum_to_size(ctx.scale_shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_s, None, None, None


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantize-dequantize `x` with `scale` and `zp` broadcastable against it, as ONNX
    QuantizeLinear then DequantizeLinear compute it (round half to even, then add the
    zero point); gradients to `x` and, when it requires them, `scale`."""
    if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
        out: torch.Tensor = _QuantDequant.apply(x, scale, zp, qmin, qmax)
        return out
    out = torch.div(x, scale).round_()  # one new tensor, the rest in place
    return out.add_(zp).clamp_(qmin, qmax).sub_(zp).mul_(scale)


def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    return (x - x * scale).detach() + x * scale


class FakeQuant(nn.Module):
    """Quantize-dequantize as ONNX QuantizeLinear/DequantizeLinear compute it, with `scale`
    a parameter. `axis` is the per-channel axis (None: per tensor); with `block`, the scale
    has one row per `block` elements along `axis` (ONNX blocked quantization)."""

    def __init__(
        self,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        qmin: int,
        qmax: int,
        axis: int | None,
        block: int = 0,
    ) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone().float())
        self.zero_point: torch.Tensor
        self.register_buffer("zero_point", zero_point.detach().clone().float())
        self.qmin, self.qmax, self.axis, self.block = qmin, qmax, axis, block

    def shaped(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """`t` (one value per channel or block) broadcastable against `like`."""
        if self.axis is None or t.ndim == 0:
            return t
        if self.block:
            return t.repeat_interleave(self.block, dim=self.axis).narrow(self.axis, 0, like.shape[self.axis])
        shape = [1] * like.ndim
        shape[self.axis] = -1
        return t.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = 1.0 / math.sqrt(max(x.numel() // max(self.scale.numel(), 1), 1) * max(self.qmax, 1))
        scale = self.shaped(_grad_scale(self.scale.abs().clamp_min(1e-9), g), x)
        return fake_quant(x, scale, self.shaped(self.zero_point, x), self.qmin, self.qmax)

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The stored integers for `x` (weights at write-back)."""
        scale = self.shaped(self.scale.detach().abs().clamp_min(1e-9), x)
        zp = self.shaped(self.zero_point, x)
        return torch.clamp(torch.round(x.detach() / scale) + zp, self.qmin, self.qmax)


def dynamic_fake_quant(x: torch.Tensor) -> torch.Tensor:
    """What DynamicQuantizeLinear -> DequantizeLinear lets through: uint8 over this tensor's
    own range (always holding 0), rounded with a straight-through gradient; the range is a
    function of the data, not a parameter."""
    lo = torch.clamp(x.detach().min(), max=0.0)
    hi = torch.clamp(x.detach().max(), min=0.0)
    scale = torch.clamp((hi - lo) / 255.0, min=1e-12)
    zp = torch.clamp(torch.round(-lo / scale), 0, 255)
    return fake_quant(x, scale, zp, 0, 255)
