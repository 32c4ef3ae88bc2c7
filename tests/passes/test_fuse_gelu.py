from __future__ import annotations

import math

import builders as b
import numpy as np
import onnx_ir as ir
import pytest
from mpqc.passes import FuseGeluPass
from onnx import TensorProto as T
from onnx import helper as h

import mpqc
from mpqc.runtime import make_session

HALF, ONE, ROOT2, INV_ROOT2 = 0.5, 1.0, math.sqrt(2.0), 1 / math.sqrt(2.0)


def _gelu(order: str, opset: int = 21, half: float = HALF, output_inside: bool = False) -> ir.Model:
    """x -> MatMul -> erf GELU spelt in one of the orders exporters write -> Relu."""
    scale = (
        [h.make_node("Div", ["m", "root2"], ["s"], name="div")]
        if order != "mul-inverse"
        else [h.make_node("Mul", ["inv_root2", "m"], ["s"], name="scale")]
    )
    core = [h.make_node("Erf", ["s"], ["e"], name="erf"), h.make_node("Add", ["e", "one"], ["p"], name="add")]
    if order in ("torch", "mul-inverse"):  # x * ((1 + erf) * 0.5)
        tail = [
            h.make_node("Mul", ["half", "p"], ["q"], name="mul_half"),
            h.make_node("Mul", ["m", "q"], ["g"], name="mul_x"),
        ]
    elif order == "x-first":  # ((1 + erf) * x) * 0.5
        tail = [
            h.make_node("Mul", ["p", "m"], ["q"], name="mul_x"),
            h.make_node("Mul", ["q", "half"], ["g"], name="mul_half"),
        ]
    else:  # (x * 0.5) * (1 + erf)
        tail = [
            h.make_node("Mul", ["m", "half"], ["q"], name="mul_half"),
            h.make_node("Mul", ["q", "p"], ["g"], name="mul_x"),
        ]
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"], name="fc"), *scale, *core, *tail]
    nodes.append(h.make_node("Relu", ["g"], ["y"], name="relu"))
    inits = [
        b.init("w", b.rng(0).randn(8, 8).astype(np.float32)),
        b.init("root2", np.array(ROOT2, np.float32)),
        b.init("inv_root2", np.array(INV_ROOT2, np.float32)),
        b.init("one", np.array(ONE, np.float32)),
        b.init("half", np.array(half, np.float32)),
    ]
    outputs = [h.make_tensor_value_info("y", T.FLOAT, None)]
    if output_inside:
        outputs.append(h.make_tensor_value_info("p", T.FLOAT, None))
    m = b.model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [3, 8])], outputs, inits, opset=opset)
    return ir.serde.deserialize_model(m)


def _run(model: ir.Model, x: np.ndarray) -> list[np.ndarray]:
    return make_session(model, optimize=False).run(None, {"x": x})


@pytest.mark.parametrize("order", ["torch", "x-first", "half-first", "mul-inverse"])
def test_every_spelling_becomes_one_gelu_with_the_same_outputs(order):
    model = _gelu(order)
    x = b.rng(1).randn(3, 8).astype(np.float32)
    before = _run(model, x)
    result = FuseGeluPass()(model)
    assert result.modified
    assert [n.op_type for n in result.model.graph] == ["MatMul", "Gelu", "Relu"]
    np.testing.assert_allclose(_run(result.model, x)[0], before[0], rtol=1e-5, atol=1e-6)


def test_what_is_not_exactly_gelu_or_is_read_elsewhere_stays():
    assert not FuseGeluPass()(_gelu("torch", half=0.6)).modified  # not GELU
    assert not FuseGeluPass()(_gelu("torch", output_inside=True)).modified  # 1 + erf is an output
    assert not FuseGeluPass()(_gelu("torch", opset=18)).modified  # no Gelu before opset 20


def test_a_gelu_that_is_a_graph_output_keeps_its_name():
    model = _gelu("torch")
    relu = next(n for n in model.graph if n.op_type == "Relu")
    model.graph.outputs[0] = relu.inputs[0]  # the GELU's own output "g" is the model's output
    model.graph.remove(relu, safe=True)
    x = b.rng(2).randn(3, 8).astype(np.float32)
    before = _run(model, x)
    result = FuseGeluPass()(model)
    assert result.modified and [v.name for v in result.model.graph.outputs] == ["g"]
    np.testing.assert_allclose(_run(result.model, x)[0], before[0], rtol=1e-5, atol=1e-6)


def test_the_front_end_fuses_an_exported_bert_gelu(tmp_path):
    from mpqc.models.hf_encoder import TINY, export_bert

    path, _, _ = export_bert(tmp_path / "bert", TINY)
    ops = [n.op_type for n in mpqc.prepare(path).model.graph]
    assert ops.count("Gelu") == TINY.layers and "Erf" not in ops
