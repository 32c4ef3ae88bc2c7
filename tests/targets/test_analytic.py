from __future__ import annotations

import math

import pytest
from mpqc.targets import get_target
from mpqc.targets.analytic import AnalyticCostModel, load_target_file

from mpqc.analysis import Layer
from mpqc.errors import MpqcError
from mpqc.precision import Precision


def P(w, a):
    return Precision(w, a)


def _layer(macs=1000, params=100, shape=(1, 4, 5, 5)) -> Layer:
    return Layer("l", "Conv", "x", "w", None, "y", shape, shape, (4, 4, 1, 1), 0, 1, macs, params)


class _Analysis:
    def __init__(self, layer):
        self.layers = (layer,)


def test_bitserial_formula_by_hand():
    target = get_target("bitserial")
    layer = _layer()
    model = AnalyticCostModel(target, _Analysis(layer))
    p = target.params
    f, lanes, bw = p["compute"]["frequency_hz"], p["compute"]["lanes"], p["memory"]["bandwidth_bytes_per_s"]
    elems = 100 + 100  # 4x5x5 in and out
    expected = 1000 * 4 * 8 / (lanes * f) + (100 * 4 + elems * 8) / 8 / bw + p["compute"]["layer_overhead_cycles"] / f
    assert model.layer_cost("l", P(4, 8)) == pytest.approx(expected)
    expected_float = 1000 / p["float"]["macs_per_second"] + (100 * 32 + elems * 32) / 8 / bw + 200 / f
    assert model.layer_cost("l", P(None, None)) == pytest.approx(expected_float)


def test_mcu_formula_by_hand_and_unsupported_precisions():
    target = get_target("mcu")
    model = AnalyticCostModel(target, _Analysis(_layer(macs=10_000)))
    assert model.layer_cost("l", P(4, 8)) == pytest.approx((10_000 * 0.45 + 3000) / 480e6)
    assert math.isinf(model.layer_cost("l", P(8, 4)))
    layer = _layer()
    assert not target.runs(layer, P(8, 4)) and target.runs(layer, P(2, 2))
    assert [p.label for p in target.precisions()] == ["w8a8", "w4a8", "w2a8", "w4a4", "w2a4", "w2a2", "float"]


@pytest.mark.parametrize("macs,params", [(1000, 100), (10**7, 10**5), (64, 4096)])
def test_bitserial_fewer_bits_never_cost_more(macs, params):
    model = AnalyticCostModel(get_target("bitserial"), _Analysis(_layer(macs, params)))
    bits = (2, 4, 8)
    for w in bits:
        for a in bits:
            for w2 in (b for b in bits if b <= w):
                for a2 in (b for b in bits if b <= a):
                    assert model.layer_cost("l", P(w2, a2)) <= model.layer_cost("l", P(w, a))
            assert model.layer_cost("l", P(w, a)) < model.layer_cost("l", P(None, None))


@pytest.mark.parametrize(
    "text,key",
    [
        ('name = "x"\nkind = "bitserial"\n[compute]\nfrequency_hz = 1e9\nlanes = 8\n', "layer_overhead_cycles"),
        ('name = "x"\nkind = "warp"\n', "kind"),
        ('kind = "mcu"\n', "name"),
        (
            'name = "x"\nkind = "bitserial"\n[compute]\nfrequency_hz = "fast"\nlanes = 8\nlayer_overhead_cycles = 0\n',
            "compute.frequency_hz",
        ),
        (
            'name = "x"\nkind = "mcu"\n[compute]\nfrequency_hz = 1\nlayer_overhead_cycles = 0\n'
            "[memory]\nflash_bytes = 1\nsram_bytes = 1\n[cycles_per_mac]\nw3a8 = 1\n",
            "cycles_per_mac.w3a8",
        ),
        ("name = \n", "not valid TOML"),
    ],
)
def test_bad_toml_names_the_key(tmp_path, text, key):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(MpqcError, match=key.replace(".", r"\.")):
        load_target_file(path)


def test_non_utf8_and_infinite_values_are_named(tmp_path):
    path = tmp_path / "t.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(MpqcError, match="UTF-8"):
        load_target_file(path)
    path.write_text(
        'name = "x"\nkind = "bitserial"\n[compute]\nfrequency_hz = inf\nlanes = 8\n'
        "layer_overhead_cycles = 0\n[memory]\nbandwidth_bytes_per_s = 1\n[float]\nmacs_per_second = 1\n"
    )
    with pytest.raises(MpqcError, match="compute.frequency_hz"):
        load_target_file(path)


def test_unknown_target_lists_the_builtins():
    with pytest.raises(MpqcError, match=r"ort-cpu, .*bitserial, mcu.*openvino-cpu|ort-cpu, openvino-cpu, bitserial"):
        get_target("tpu")
