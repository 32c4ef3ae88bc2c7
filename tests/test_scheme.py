from __future__ import annotations

import json

import pytest

from mpqc.errors import MpqcError
from mpqc.scheme import SHORTHANDS, LayerPrecision, Scheme

NAMES = ["conv1", "conv2", "fc"]


@pytest.mark.parametrize("shorthand", SHORTHANDS)
def test_shorthands(shorthand):
    scheme = Scheme.parse(shorthand, NAMES)
    assert {p.label for p in scheme.layers.values()} == {shorthand}


def test_json_round_trip(tmp_path):
    scheme = Scheme.from_json(
        {"default": "w4a8", "layers": {"conv1": {"w_bits": 8, "a_bits": "float", "per_channel": False}, "fc": "w2a8"}},
        NAMES,
    )
    assert scheme["conv1"] == LayerPrecision(8, None, per_channel=False)
    assert scheme["conv2"] == LayerPrecision(4, 8)
    assert scheme["fc"].label == "w2a8"
    path = tmp_path / "s.json"
    path.write_text(scheme.dumps())
    assert Scheme.parse(str(path), NAMES) == scheme
    assert json.loads(path.read_text())["layers"]["conv1"]["a_bits"] == "float"


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(MpqcError, match=r"unknown layer\(s\) \['conv9'\].*conv1, conv2, fc"):
        Scheme.from_json({"layers": {"conv9": "w4a8"}}, NAMES)


@pytest.mark.parametrize("bad", [3, "16", 1, True, "int8"])
def test_bits_outside_the_set_list_the_choices(bad):
    with pytest.raises(MpqcError, match="2, 4, 8 or float"):
        Scheme.from_json({"layers": {"fc": {"w_bits": bad}}}, NAMES)


def test_bad_shorthand_lists_the_shorthands():
    with pytest.raises(MpqcError, match="w8a8, w4a8, w4a4, w2a8, float"):
        Scheme.parse("w3a8", NAMES)


def test_unknown_keys_are_errors():
    with pytest.raises(MpqcError, match="unknown key"):
        Scheme.from_json({"layers": {"fc": {"wbits": 4}}}, NAMES)
    with pytest.raises(MpqcError, match="unknown key"):
        Scheme.from_json({"layer": {}}, NAMES)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(MpqcError, match="not found"):
        Scheme.parse(str(tmp_path / "none.json"), NAMES)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(MpqcError, match="not valid JSON"):
        Scheme.parse(str(bad), NAMES)
