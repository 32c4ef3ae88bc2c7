"""Check, simplify, shape inference and opset upgrade, each on a model built in code."""

from __future__ import annotations

import builders as b
import numpy as np
import onnx_ir as ir
import pytest
from mpqc.passes import CheckModelPass, InferShapesPass, SimplifyPass, UpgradeOpsetPass
from onnx import TensorProto as T
from onnx import helper as h

from mpqc.errors import MpqcError
from mpqc.runtime import make_session


def _ir(proto) -> ir.Model:
    return ir.serde.deserialize_model(proto)


def test_check_rejects_an_invalid_model_in_one_line():
    bad = b.conv_relu_gemm()
    bad.graph.node[0].input[1] = "missing_weight"
    with pytest.raises(MpqcError, match="invalid ONNX model") as info:
        CheckModelPass()(_ir(bad))
    assert "\n" not in str(info.value)


def test_check_accepts_a_valid_model_unchanged():
    result = CheckModelPass()(_ir(b.conv_relu_gemm()))
    assert not result.modified


def test_simplify_folds_constant_subgraphs_and_keeps_outputs():
    r = b.rng(0)
    nodes = [
        h.make_node("Transpose", ["wt"], ["w"], perm=[1, 0], name="t"),  # constant-foldable weight
        h.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
    ]
    m = b.model(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [2, 4])],
        [h.make_tensor_value_info("y", T.FLOAT, [2, 3])],
        [b.init("wt", r.randn(3, 4).astype(np.float32))],
    )
    x = r.randn(2, 4).astype(np.float32)
    before = make_session(m).run(None, {"x": x})[0]
    result = SimplifyPass()(_ir(m))
    assert result.modified
    assert [n.op_type for n in result.model.graph] == ["MatMul"]
    np.testing.assert_allclose(make_session(result.model).run(None, {"x": x})[0], before, rtol=1e-6)


def test_shape_inference_fills_intermediate_shapes():
    model = _ir(b.conv_relu_gemm())
    InferShapesPass()(model)
    shapes = {v.name: v.shape for n in model.graph for v in n.outputs}
    assert list(shapes["c1"]) == [1, 8, 8, 8]
    assert list(shapes["f"]) == [1, 8]


def test_upgrade_opset_converts_old_models_and_never_downgrades():
    old = _ir(b.conv_relu_gemm(opset=11))
    result = UpgradeOpsetPass(21)(old)
    assert result.modified and result.model.opset_imports[""] == 21
    assert result.model.ir_version >= 10
    x = b.rng(0).randn(1, 3, 8, 8).astype(np.float32)
    np.testing.assert_allclose(
        make_session(result.model).run(None, {"x": x})[0], make_session(old).run(None, {"x": x})[0], rtol=1e-6
    )
    again = UpgradeOpsetPass(17)(result.model)
    assert not again.modified and again.model.opset_imports[""] == 21


def test_upgrade_to_25_for_two_bit_types():
    result = UpgradeOpsetPass(25)(_ir(b.conv_relu_gemm()))
    assert result.model.opset_imports[""] == 25
    make_session(result.model)
