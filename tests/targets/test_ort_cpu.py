"""ort-cpu with a tiny profile (few repeats): cache hits and invalidation, attribution,
and predictions that follow the measured variants."""

from __future__ import annotations

import builders as b
import numpy as np
import pytest
from mpqc.targets import OrtCpuTarget

import mpqc
from mpqc.scheme import LayerPrecision, Scheme


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQC_CACHE_DIR", str(tmp_path))
    prepared = mpqc.prepare(b.conv_relu_gemm())
    feed = {"x": np.zeros((1, 3, 8, 8), np.float32)}
    return prepared, feed, OrtCpuTarget(warmup=2, repeats=5)


def test_cache_hit_then_invalidation(setup, tmp_path):
    prepared, feed, target = setup
    first = target.cost_model(prepared, feed)
    assert not first.cached and len(list((tmp_path / "ort-cpu").glob("*.json"))) == 1
    again = target.cost_model(prepared, feed)
    assert again.cached and again.nodes == first.nodes
    assert set(first.spreads) == set(first.walls) and again.spreads == first.spreads
    assert all(s >= 0 for s in first.spreads.values())
    fresh = target.cost_model(prepared, feed, use_cache=False)
    assert not fresh.cached
    other_threads = OrtCpuTarget(threads=2, warmup=2, repeats=5).cost_model(prepared, feed)
    assert not other_threads.cached  # the key holds threads, ORT version, CPU model and the model hash
    changed = mpqc.prepare(b.conv_relu_gemm(seed=1))
    assert not target.cost_model(changed, feed).cached
    assert len(list((tmp_path / "ort-cpu").glob("*.json"))) == 3


def test_a_corrupt_cache_file_is_measured_again(setup, tmp_path):
    prepared, feed, target = setup
    target.cost_model(prepared, feed)
    (path,) = (tmp_path / "ort-cpu").glob("*.json")
    path.write_text("{}")
    assert not target.cost_model(prepared, feed).cached


def test_layers_get_their_kernel_time_and_predictions_are_positive(setup):
    prepared, feed, target = setup
    costs = target.cost_model(prepared, feed)
    for layer in ("conv1", "fc"):
        assert costs.layer_cost(layer, (8, 8)) > 0 and costs.layer_cost(layer, (None, None)) > 0
    names = prepared.analysis.layer_names
    mixed = Scheme({"conv1": LayerPrecision(8, 8), "fc": LayerPrecision(None, None)})
    predicted, fallbacks = costs.predict(mixed)
    assert predicted > 0 and fallbacks <= 2
    uniform = costs.latency(Scheme.uniform(names, LayerPrecision(8, 8)))
    assert uniform == pytest.approx(costs.walls["w8a8"], rel=0.5)
