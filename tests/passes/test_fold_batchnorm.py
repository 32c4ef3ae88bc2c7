from __future__ import annotations

import builders as b
import numpy as np
import onnx_ir as ir
from mpqc.passes import FoldBatchNormPass
from onnx import TensorProto as T
from onnx import helper as h

from mpqc.runtime import make_session


def _conv_bn(group: int = 1, op: str = "Conv") -> ir.Model:
    r = b.rng(0)
    cin, cout = 4, 4
    w_shape = (cout, cin // group, 3, 3) if op == "Conv" else (cin, cout // group, 3, 3)
    nodes = [
        h.make_node(op, ["x", "w"], ["c"], group=group, name="conv"),
        h.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], epsilon=1e-3, name="bn"),
    ]
    inits = [
        b.init("w", r.randn(*w_shape).astype(np.float32)),
        b.init("s", r.uniform(0.5, 2, cout).astype(np.float32)),
        b.init("bb", r.randn(cout).astype(np.float32)),
        b.init("m", r.randn(cout).astype(np.float32)),
        b.init("v", r.uniform(0.5, 2, cout).astype(np.float32)),
    ]
    m = b.model(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [2, cin, 6, 6])],
        [h.make_tensor_value_info("y", T.FLOAT, None)],
        inits,
    )
    return ir.serde.deserialize_model(m)


def _outputs(model: ir.Model, x: np.ndarray) -> np.ndarray:
    return make_session(model, optimize=False).run(None, {"x": x})[0]


def test_folds_conv_bn_numerically_equal():
    for group, op in ((1, "Conv"), (2, "Conv"), (4, "Conv"), (1, "ConvTranspose"), (2, "ConvTranspose")):
        model = _conv_bn(group, op)
        x = b.rng(1).randn(2, 4, 6, 6).astype(np.float32)
        before = _outputs(model, x)
        result = FoldBatchNormPass()(model)
        assert result.modified
        assert [n.op_type for n in result.model.graph] == [op]
        np.testing.assert_allclose(_outputs(result.model, x), before, rtol=1e-4, atol=1e-5)


def test_leaves_bn_whose_input_has_other_uses():
    model = _conv_bn()
    conv_out = next(iter(model.graph)).outputs[0]
    model.graph.outputs.append(conv_out)
    result = FoldBatchNormPass()(model)
    assert not result.modified
    assert [n.op_type for n in result.model.graph] == ["Conv", "BatchNormalization"]
