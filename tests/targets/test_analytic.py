from __future__ import annotations

import math

import pytest
from mpqc.targets import get_target
from mpqc.targets.analytic import AnalyticCostModel, load_target_file

from mpqc.analysis import Layer
from mpqc.errors import MpqcError


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
    assert model.layer_cost("l", (4, 8)) == pytest.approx(expected)
    expected_float = 1000 / p["float"]["macs_per_second"] + (100 * 32 + elems * 32) / 8 / bw + 200 / f
    assert model.layer_cost("l", (None, None)) == pytest.approx(expected_float)


def test_mcu_formula_by_hand_and_unsupported_precisions():
    target = get_target("mcu")
    model = AnalyticCostModel(target, _Analysis(_layer(macs=10_000)))
    assert model.layer_cost("l", (4, 8)) == pytest.approx((10_000 * 0.45 + 3000) / 480e6)
    assert math.isinf(model.layer_cost("l", (8, 4)))
    assert not target.supports("Conv", (8, 4)) and target.supports("Conv", (2, 2))


@pytest.mark.parametrize("macs,params", [(1000, 100), (10**7, 10**5), (64, 4096)])
def test_bitserial_fewer_bits_never_cost_more(macs, params):
    model = AnalyticCostModel(get_target("bitserial"), _Analysis(_layer(macs, params)))
    bits = (2, 4, 8)
    for w in bits:
        for a in bits:
            for w2 in (b for b in bits if b <= w):
                for a2 in (b for b in bits if b <= a):
                    assert model.layer_cost("l", (w2, a2)) <= model.layer_cost("l", (w, a))
            assert model.layer_cost("l", (w, a)) < model.layer_cost("l", (None, None))


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


def test_unknown_target_lists_the_builtins():
    with pytest.raises(MpqcError, match="ort-cpu, bitserial, mcu"):
        get_target("tpu")
