from __future__ import annotations

import json

import pytest

from mpqc.errors import SchemeError
from mpqc.precision import Precision
from mpqc.scheme import SHORTHANDS, Scheme

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
    assert scheme["conv1"] == Precision(8, None, per_channel=False)
    assert scheme["conv2"] == Precision(4, 8)
    assert scheme["fc"].label == "w2a8"
    path = tmp_path / "s.json"
    path.write_text(scheme.dumps())
    assert Scheme.parse(str(path), NAMES) == scheme
    assert json.loads(path.read_text())["layers"]["conv1"]["a_bits"] == "float"


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(SchemeError, match=r"unknown layer\(s\) \['conv9'\].*conv1, conv2, fc"):
        Scheme.from_json({"layers": {"conv9": "w4a8"}}, NAMES)


@pytest.mark.parametrize("bad", [3, "16", 1, True, "int8"])
def test_bits_outside_the_set_list_the_choices(bad):
    with pytest.raises(SchemeError, match="2, 4, 8 or float"):
        Scheme.from_json({"layers": {"fc": {"w_bits": bad}}}, NAMES)


def test_bad_shorthand_lists_the_shorthands():
    with pytest.raises(SchemeError, match="w8a8, w4a8"):
        Scheme.parse("w3a8", NAMES)


def test_unknown_keys_are_errors():
    with pytest.raises(SchemeError, match="unknown key"):
        Scheme.from_json({"layers": {"fc": {"wbits": 4}}}, NAMES)
    with pytest.raises(SchemeError, match="unknown key"):
        Scheme.from_json({"layer": {}}, NAMES)


def test_missing_malformed_and_non_utf8_files(tmp_path):
    with pytest.raises(SchemeError, match="not found"):
        Scheme.parse(str(tmp_path / "none.json"), NAMES)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SchemeError, match="not valid JSON"):
        Scheme.parse(str(bad), NAMES)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"default": "w8a8\xe9"}')
    with pytest.raises(SchemeError, match="UTF-8"):
        Scheme.parse(str(latin), NAMES)


def test_summary_tells_mixed_schemes_apart():
    a = Scheme({"conv1": Precision(4, 8), "conv2": Precision(8, 8), "fc": Precision(8, 8)})
    b = Scheme({"conv1": Precision(8, 8), "conv2": Precision(4, 8), "fc": Precision(8, 8)})
    assert a.summary().startswith("mixed 2 w8a8 + 1 w4a8 [") and a.summary() != b.summary()
    assert Scheme.uniform(NAMES, Precision(4, 4)).summary() == "w4a4"


def test_schemes_pickle():
    import pickle

    scheme = Scheme.parse("w4a8", NAMES)
    assert pickle.loads(pickle.dumps(scheme)) == scheme
