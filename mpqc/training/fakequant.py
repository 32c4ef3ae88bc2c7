"""Fake quantization with a learnable scale (LSQ, Esser et al. 2020): round with a
straight-through gradient, saturate to the integer range, and learn the step size with
the gradient scaled by 1/sqrt(elements x qmax)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FakeQuant", "dynamic_fake_quant"]


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (torch.round(x) - x).detach() + x


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
        zp = self.shaped(self.zero_point, x)
        q = torch.clamp(_round_ste(x / scale) + zp, self.qmin, self.qmax)
        return (q - zp) * scale

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
    q = torch.clamp(_round_ste(x / scale) + zp, 0, 255)
    return (q - zp) * scale
