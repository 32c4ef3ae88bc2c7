from __future__ import annotations

import json

import pytest
from mpqc.models import DEFAULT_MODEL, MODELS_DIR, manifest, zoo_path
from mpqc.models.train import train
from mpqc.models.zoo import ZOO

from mpqc.errors import MpqcError


def test_every_zoo_model_ships_trained_with_its_accuracy():
    shipped = manifest()
    for name in ZOO:
        assert zoo_path(name).exists()
        assert shipped[name]["float_test_top1"] > 0.9
    assert shipped[DEFAULT_MODEL]["default"] is True
    assert json.loads((MODELS_DIR / "manifest.json").read_text()) == shipped


def test_training_is_deterministic(tmp_path):
    a = train(DEFAULT_MODEL, epochs=1, seed=3, output_dir=tmp_path / "a")
    b = train(DEFAULT_MODEL, epochs=1, seed=3, output_dir=tmp_path / "b")
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.test_top1 == b.test_top1


def test_unknown_zoo_model():
    with pytest.raises(MpqcError, match="digits_cnn"):
        train("vgg")
