from __future__ import annotations

import builders as b
import numpy as np
from mpqc.passes.observe_tensors import ObserveTensorsPass

import mpqc
from mpqc.calibrate import calibrate
from mpqc.data import Dataset
from mpqc.signature import input_specs


def test_observe_adds_outputs_on_a_copy():
    prepared = mpqc.prepare(b.conv_relu_gemm())
    result = ObserveTensorsPass(["c1", "r1"])(prepared.model)
    assert result.modified and result.model is not prepared.model
    assert [v.name for v in result.model.graph.outputs] == ["y", "c1", "r1"]
    assert [v.name for v in prepared.model.graph.outputs] == ["y"]


def test_batch_size_does_not_change_the_statistics():
    prepared = mpqc.prepare(b.conv_relu_gemm())
    data = Dataset({"x": b.rng(0).randn(40, 3, 8, 8).astype(np.float32)}, None, "random")
    tensors = prepared.analysis.activation_tensors
    specs = input_specs(prepared.model)
    one = calibrate(prepared.model, data, specs, tensors, batch_size=40)
    many = calibrate(prepared.model, data, specs, tensors, batch_size=7)
    for name in tensors:
        assert one[name].min == many[name].min and one[name].max == many[name].max
        assert one[name].count == many[name].count
    assert one["r1"].min == 0.0


def test_masks_and_non_finite_values_do_not_break_the_histogram():
    """A transformer's attention mask fills scores with float-min; -inf appears too."""
    from mpqc.ranges import activation_range
    from mpqc.stats import TensorStats

    stats = TensorStats()
    scores = b.rng(0).randn(1000).astype(np.float32)
    scores[:300] = np.finfo(np.float32).min
    scores[300:310] = -np.inf
    stats.update(scores)
    assert stats.nonfinite == 10 and stats.low_sentinels == 300
    for method in ("percentile", "mse"):
        lo, hi = activation_range(stats, 8, False, method)
        assert -10 < lo < 0 < hi < 10
    assert activation_range(stats, 8, False, "minmax")[0] == float(np.finfo(np.float32).min)
    constant = TensorStats()
    constant.update(np.zeros(100, np.float32))
    assert activation_range(constant, 8, False, "mse") == (0.0, 0.0)
