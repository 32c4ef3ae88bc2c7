"""Fake quantization with a learnable scale (LSQ, Esser et al. 2020): round with a
straight-through gradient, saturate to the integer range, and learn the step size with
the gradient scaled by 1/sqrt(elements x qmax)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FakeQuant"]


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (torch.round(x) - x).detach() + x


def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    return (x - x * scale).detach() + x * scale


class FakeQuant(nn.Module):
    """Quantize-dequantize as ONNX QuantizeLinear/DequantizeLinear compute it, with `scale`
    a parameter. `axis` is the per-channel axis (None: per tensor)."""

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int, axis: int | None) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale.detach().clone().float())
        self.zero_point: torch.Tensor
        self.register_buffer("zero_point", zero_point.detach().clone().float())
        self.qmin, self.qmax, self.axis = qmin, qmax, axis

    def shaped(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        if self.axis is None or t.ndim == 0:
            return t
        shape = [1] * ndim
        shape[self.axis] = -1
        return t.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = 1.0 / math.sqrt(max(x.numel() // max(self.scale.numel(), 1), 1) * max(self.qmax, 1))
        scale = self.shaped(_grad_scale(self.scale.abs().clamp_min(1e-9), g), x.ndim)
        zp = self.shaped(self.zero_point, x.ndim)
        q = torch.clamp(_round_ste(x / scale) + zp, self.qmin, self.qmax)
        return (q - zp) * scale

    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The stored integers for `x` (weights at write-back)."""
        scale = self.shaped(self.scale.detach().abs().clamp_min(1e-9), x.ndim)
        zp = self.shaped(self.zero_point, x.ndim)
        return torch.clamp(torch.round(x.detach() / scale) + zp, self.qmin, self.qmax)
