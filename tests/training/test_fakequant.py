"""The fused quantize-dequantize function against the plain chain of tensor operations it
replaces (LSQ with a straight-through round): same values, same gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mpqc.training.fakequant import FakeQuant, dynamic_fake_quant, fake_quant


def _chain(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    rounded = (torch.round(x / scale) - x / scale).detach() + x / scale
    q = torch.clamp(rounded + zp, qmin, qmax)
    return (q - zp) * scale


def _grads(fn, x, scale, zp, qmin, qmax, weights):  # type: ignore[no-untyped-def]
    x = x.clone().requires_grad_(True)
    scale = scale.clone().requires_grad_(True)
    out = fn(x, scale, zp, qmin, qmax)
    (out * weights).sum().backward()
    return out.detach(), x.grad, scale.grad


@pytest.mark.parametrize(
    ("scale_shape", "zp_value", "qrange"),
    [((), 0.0, (-8, 7)), ((), 128.0, (0, 255)), ((1, 4, 1, 1), 0.0, (-2, 1)), ((1, 4, 1, 1), 3.0, (0, 15))],
)
def test_fused_matches_the_chain(scale_shape: tuple[int, ...], zp_value: float, qrange: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    scale = torch.rand(scale_shape, generator=gen) * 0.3 + 0.05
    x = torch.randn(3, 4, 5, 6, generator=gen) * float(scale.max()) * (qrange[1] - qrange[0]) / 3
    zp = torch.full(scale_shape, zp_value)
    weights = torch.randn(x.shape, generator=gen)  # a gradient that is not all ones
    fused = _grads(fake_quant, x, scale, zp, *qrange, weights)
    chain = _grads(_chain, x, scale, zp, *qrange, weights)
    assert torch.equal(fused[0], chain[0])
    torch.testing.assert_close(fused[1], chain[1])
    torch.testing.assert_close(fused[2], chain[2], rtol=1e-5, atol=1e-5)
    saturated = (fused[1] == 0).float().mean()
    assert 0 < saturated < 1  # both sides of the range are exercised


def test_no_grad_path_gives_the_same_values() -> None:
    x = torch.linspace(-3, 3, 101)
    scale, zp = torch.tensor(0.1), torch.tensor(5.0)
    with torch.no_grad():
        plain = fake_quant(x, scale, zp, 0, 15)
    assert torch.equal(plain, _chain(x, scale, zp, 0, 15))


def test_frozen_input_still_trains_the_scale() -> None:
    x = torch.randn(64)
    scale = torch.tensor(0.2, requires_grad=True)
    fake_quant(x, scale, torch.tensor(0.0), -8, 7).square().sum().backward()
    assert scale.grad is not None and math.isfinite(float(scale.grad)) and float(scale.grad) != 0


def test_module_scale_gradient_is_lsq_scaled() -> None:
    """FakeQuant multiplies the scale's gradient by 1/sqrt(elements per scale x qmax)."""
    x = torch.randn(2, 3, 8, 8)
    fq = FakeQuant(torch.full((3,), 0.1), torch.zeros(3), -8, 7, axis=1)
    fq(x).sum().backward()
    scale = torch.full((1, 3, 1, 1), 0.1, requires_grad=True)
    _chain(x, scale, torch.zeros(1, 3, 1, 1), -8, 7).sum().backward()
    assert scale.grad is not None and fq.scale.grad is not None
    expected = scale.grad.reshape(3) / math.sqrt(2 * 8 * 8 * 7)
    torch.testing.assert_close(fq.scale.grad, expected, rtol=1e-5, atol=1e-6)


def test_dynamic_passes_gradient_inside_its_own_range() -> None:
    x = torch.randn(50, requires_grad=True)
    dynamic_fake_quant(x).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones(50))  # the range holds every value
