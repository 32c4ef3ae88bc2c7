from __future__ import annotations

import builders as b
import numpy as np
from mpqc.passes.observe_tensors import ObserveTensorsPass

import mpqc
from mpqc.calibrate import calibrate
from mpqc.data import Dataset


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
    one = calibrate(prepared.model, data, tensors, batch_size=40)
    many = calibrate(prepared.model, data, tensors, batch_size=7)
    for name in tensors:
        assert one[name].min == many[name].min and one[name].max == many[name].max
        assert one[name].count == many[name].count
    assert one["r1"].min == 0.0
