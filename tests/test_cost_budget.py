from __future__ import annotations

import builders as b
import pytest

import mpqc
from mpqc.budget import Budget
from mpqc.cost import SchemeCost, bops, peak_activation_bytes, weight_bytes
from mpqc.errors import MpqcError
from mpqc.scheme import LayerPrecision, Scheme


@pytest.fixture(scope="module")
def prepared():
    return mpqc.prepare(b.conv_relu_gemm())


def test_weight_bytes_and_bops_by_hand(prepared):
    names = prepared.analysis.layer_names
    w4a8 = Scheme.uniform(names, LayerPrecision(4, 8))
    # conv1: 216 weights at 4 bits + 8 float biases; fc: 40 weights at 4 bits + 5 biases
    assert weight_bytes(prepared.analysis, w4a8) == 108 + 32 + 20 + 20
    conv, fc = prepared.analysis.layers
    assert bops(prepared.analysis, w4a8) == (conv.macs + fc.macs) * 32
    assert bops(prepared.analysis, Scheme.uniform(names, LayerPrecision(None, None))) == (conv.macs + fc.macs) * 1024


def test_peak_activation_shrinks_with_activation_bits(prepared):
    names = prepared.analysis.layer_names
    peaks = [
        peak_activation_bytes(prepared.model, prepared.analysis, Scheme.uniform(names, LayerPrecision(8, a)))
        for a in (None, 8, 4)
    ]
    assert peaks[0] > peaks[1] > peaks[2] > 0


def test_budget_parsing_absolute_and_relative():
    budget = Budget.parse("latency=2.5ms, size=40KB")
    ref = SchemeCost(latency_s=0.004, weight_bytes=100_000, peak_activation_bytes=1, bops=1)
    assert budget.absolute(ref) == {"latency": 0.0025, "size": 40 * 1024}
    assert Budget.parse("latency=0.6x").absolute(ref)["latency"] == pytest.approx(0.0024)
    assert Budget.parse("bops=1.5G").limits[0].value == 1.5e9
    ok = SchemeCost(0.002, 30_000, 1, 1)
    assert budget.fits(ok, ref) and not budget.fits(SchemeCost(0.003, 30_000, 1, 1), ref)


@pytest.mark.parametrize("text", ["speed=2ms", "latency=2parsecs", "latency", "", "size=-1KB"])
def test_bad_budgets(text):
    with pytest.raises(MpqcError):
        Budget.parse(text)
