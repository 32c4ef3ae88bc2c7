from __future__ import annotations

import pytest

from mpqc.errors import SchemeError
from mpqc.precision import Precision


@pytest.mark.parametrize("label", ["float", "w8a8", "w4a8", "w2a4", "w8af", "wfa8", "w8a8d", "w4nb", "w8nb", "w4nb64"])
def test_labels_round_trip(label):
    precision = Precision.parse(label)
    assert precision.label == label
    assert Precision.from_json(precision.to_json()) == precision


def test_forms():
    assert Precision.parse("w8a8d").form == "dynamic" and not Precision.parse("w8a8d").quantizes_activations
    nbits = Precision.parse("w4nb")
    assert nbits.form == "nbits" and nbits.block == 32 and nbits.a_bits is None
    assert Precision.parse("w8a8").quantizes_activations and not Precision.parse("w8af").quantizes_activations


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"w_bits": 4, "a_bits": 8, "form": "dynamic"}, "w8a8d"),
        ({"w_bits": 4, "a_bits": 8, "form": "nbits"}, "weights only"),
        ({"w_bits": 4, "a_bits": None, "form": "nbits", "block": 24}, "power of two"),
        ({"w_bits": 8, "a_bits": 8, "block": 32}, "nbits form only"),
        ({"w_bits": 8, "a_bits": 8, "form": "fp8"}, "form must be"),
        ({"w_bits": 3}, "2, 4, 8"),
    ],
)
def test_invalid_combinations(kwargs, word):
    with pytest.raises(SchemeError, match=word):
        Precision(**kwargs)


def test_unknown_label_lists_the_forms():
    with pytest.raises(SchemeError, match="w8a8d"):
        Precision.parse("int8")


def test_flags_carry_over_from_the_default():
    base = Precision(8, 8, per_channel=False)
    assert Precision.from_json("w4a8", base).per_channel is False
    assert Precision.from_json({"w_bits": 4, "form": "nbits", "a_bits": "float"}, base).block == 32
