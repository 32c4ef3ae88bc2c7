from __future__ import annotations

import builders as b
import pytest

import mpqc
from mpqc.cost import bops, layer_weight_bytes, peak_activation_bytes, weight_bytes
from mpqc.precision import Precision
from mpqc.scheme import Scheme


@pytest.fixture(scope="module")
def prepared():
    return mpqc.prepare(b.conv_relu_gemm())


def test_weight_bytes_and_bops_by_hand(prepared):
    names = prepared.analysis.layer_names
    w4a8 = Scheme.uniform(names, Precision(4, 8))
    # conv1: 216 weights at 4 bits + 8 float biases; fc: 40 weights at 4 bits + 5 biases
    assert weight_bytes(prepared.analysis, w4a8) == 108 + 32 + 20 + 20
    conv, fc = prepared.analysis.layers
    assert bops(prepared.analysis, w4a8) == (conv.macs + fc.macs) * 32
    assert bops(prepared.analysis, Scheme.uniform(names, Precision(None, None))) == (conv.macs + fc.macs) * 1024


def test_nbits_counts_its_block_scales(prepared):
    fc = prepared.analysis.layers[1]
    assert layer_weight_bytes(fc, Precision.parse("w4nb")) == 20 + 4 * 2 + 20  # 40 weights, 2 blocks of 32, bias


def test_peak_activation_shrinks_with_activation_bits(prepared):
    names = prepared.analysis.layer_names
    peaks = [
        peak_activation_bytes(prepared.model, prepared.analysis, Scheme.uniform(names, Precision(8, a)))
        for a in (None, 8, 4)
    ]
    assert peaks[0] > peaks[1] > peaks[2] > 0
