"""Every op QAT runs agrees with ONNX Runtime: each case is a one-node model at opset 21,
run by ONNX Runtime and by the torch interpreter on the same inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from mpqc.errors import ModelError
from mpqc.runtime import make_session
from mpqc.training.graph import TrainableGraph
from mpqc.training.ops import OPS

R = np.random.RandomState(0)
F32 = R.randn(2, 3, 4, 5).astype(np.float32)
SEQ = R.randn(5, 2, 3).astype(np.float32)  # steps, batch, features


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def _case(op, inputs, attrs=None, consts=None, outputs=1):
    """inputs: name -> array fed at run time; consts: name -> array as initializers (op inputs
    in the order inputs then consts, '' for an omitted optional input)."""
    return (op, inputs, attrs or {}, consts or {}, outputs)


CASES = {
    "split-num-outputs": _case("Split", {"x": F32}, {"axis": 3, "num_outputs": 2}, outputs=2),
    "split-sizes": _case("Split", {"x": F32}, {"axis": 1}, {"s": _i64(1, 2)}, outputs=2),
    "where": _case("Where", {"c": F32 > 0, "a": F32, "b": -F32}),
    "expand": _case("Expand", {"x": F32[:, :1]}, consts={"shape": _i64(2, 3, 1, 1)}),
    "tile": _case("Tile", {"x": F32}, consts={"r": _i64(1, 2, 1, 3)}),
    "einsum": _case("Einsum", {"a": F32[0], "b": F32[1]}, {"equation": "cij,ckj->cik"}),
    "resize-nearest-asymmetric": _case(
        "Resize",
        {"x": F32},
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
    ),
    "resize-nearest-half-pixel": _case(
        "Resize",
        {"x": F32},
        {"mode": "nearest"},
        {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 3, 2], np.float32)},
    ),
    "resize-linear-sizes": _case(
        "Resize",
        {"x": F32},
        {"mode": "linear"},
        {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32), "sizes": _i64(2, 3, 7, 9)},
    ),
    "pad-constant": _case(
        "Pad", {"x": F32}, {"mode": "constant"}, {"p": _i64(0, 0, 1, 2, 0, 0, 3, 0), "v": np.array(0.5, np.float32)}
    ),
    "pad-reflect": _case("Pad", {"x": F32}, {"mode": "reflect"}, {"p": _i64(0, 0, 1, 2, 0, 0, 2, 1)}),
    "pad-edge-axes": _case(
        "Pad", {"x": F32}, {"mode": "edge"}, {"p": _i64(1, 2), "v": np.array(0, np.float32), "axes": _i64(3)}
    ),
    "constant-of-shape": _case(
        "ConstantOfShape", {}, {"value": numpy_helper.from_array(np.array([2.5], np.float32))}, {"shape": _i64(2, 3)}
    ),
    "range": _case(
        "Range", {}, consts={"a": np.array(1, np.int64), "b": np.array(10, np.int64), "c": np.array(3, np.int64)}
    ),
    "less": _case("Less", {"a": F32, "b": np.zeros_like(F32)}),
    "greater-or-equal": _case("GreaterOrEqual", {"a": F32, "b": F32[:, :1]}),
    "equal": _case("Equal", {"a": np.round(F32), "b": np.zeros_like(F32)}),
    "min": _case("Min", {"a": F32, "b": -F32, "c": F32 * 0.5}),
    "max": _case("Max", {"a": F32, "b": -F32}),
    "abs": _case("Abs", {"x": F32}),
    "log": _case("Log", {"x": np.abs(F32) + 0.1}),
    "floor": _case("Floor", {"x": F32 * 3}),
    "ceil": _case("Ceil", {"x": F32 * 3}),
    "reduce-l2": _case("ReduceL2", {"x": F32}, {"keepdims": 0}, {"axes": _i64(1, 3)}),
    "reduce-mean-all": _case("ReduceMean", {"x": F32}),
    "instance-norm": _case(
        "InstanceNormalization", {"x": F32}, {}, {"s": R.rand(3).astype(np.float32), "b": R.randn(3).astype(np.float32)}
    ),
    "group-norm": _case(
        "GroupNormalization",
        {"x": np.repeat(F32, 2, axis=1)},
        {"num_groups": 3},
        {"s": R.rand(6).astype(np.float32), "b": R.randn(6).astype(np.float32)},
    ),
    "softplus": _case("Softplus", {"x": F32}),
    "cumsum": _case("CumSum", {"x": F32}, {}, {"axis": np.array(2, np.int64)}),
    "cumsum-reverse-exclusive": _case(
        "CumSum", {"x": F32}, {"reverse": 1, "exclusive": 1}, {"axis": np.array(3, np.int64)}
    ),
    "slice-negative-step": _case(
        "Slice", {"x": F32}, {}, {"s": _i64(-1), "e": _i64(-100), "a": _i64(3), "st": _i64(-2)}
    ),
    "gather-negative": _case("Gather", {"x": F32}, {"axis": 2}, {"i": _i64(-1, 0)}),
    "lstm-bidirectional": _case(
        "LSTM",
        {"x": SEQ},
        {"hidden_size": 4, "direction": "bidirectional"},
        {
            "W": R.randn(2, 16, 3).astype(np.float32) * 0.5,
            "R": R.randn(2, 16, 4).astype(np.float32) * 0.5,
            "B": R.randn(2, 32).astype(np.float32) * 0.1,
        },
        outputs=3,
    ),
    "gru": _case(
        "GRU",
        {"x": SEQ},
        {"hidden_size": 4, "linear_before_reset": 1},
        {
            "W": R.randn(1, 12, 3).astype(np.float32) * 0.5,
            "R": R.randn(1, 12, 4).astype(np.float32) * 0.5,
            "B": R.randn(1, 24).astype(np.float32) * 0.1,
        },
        outputs=2,
    ),
    "topk": _case("TopK", {"x": F32}, {"axis": -1}, {"k": _i64(2)}, outputs=2),
    "depth-to-space": _case("DepthToSpace", {"x": np.repeat(F32, 4, axis=1)}, {"blocksize": 2}),
    "hard-swish": _case("HardSwish", {"x": F32 * 4}),
    "div-int": _case("Div", {"a": _i64(7, -7, 9), "b": _i64(2, 2, -4)}),
    # opset 23: the front end's FuseAttentionPass writes this op
    "attention-3d-additive-mask": _case(
        "Attention",
        {
            "q": R.randn(2, 5, 8).astype(np.float32),
            "k": R.randn(2, 6, 8).astype(np.float32),
            "v": R.randn(2, 6, 8).astype(np.float32),
            # padded keys at -inf or the lowest float; the last query of each sample sees no key
            "mask": np.where(
                (R.rand(2, 1, 5, 6) < 0.3) | (np.arange(5)[:, None] == 4),
                np.float32([-np.inf, -3.4028235e38]).reshape(2, 1, 1, 1),
                0.0,
            ).astype(np.float32),
        },
        {"q_num_heads": 2, "kv_num_heads": 2, "scale": 0.3},
    ),
    "attention-3d-bool-mask": _case(
        "Attention",
        {
            "q": R.randn(2, 5, 8).astype(np.float32),
            "k": R.randn(2, 5, 8).astype(np.float32),
            "v": R.randn(2, 5, 12).astype(np.float32),
            "mask": np.tril(np.ones((5, 5), bool)) & (np.arange(5)[:, None] > 0),  # query 0 sees nothing
        },
        {"q_num_heads": 2, "kv_num_heads": 2},
    ),
    "attention-4d-causal-grouped": _case(
        "Attention",
        {
            "q": R.randn(2, 4, 5, 3).astype(np.float32),
            "k": R.randn(2, 2, 5, 3).astype(np.float32),
            "v": R.randn(2, 2, 5, 3).astype(np.float32),
        },
        {"is_causal": 1},
    ),
}


def _model(op, inputs, attrs, consts, outputs) -> onnx.ModelProto:
    """The one-node model; output types come from ONNX shape inference."""
    graph_inputs = [
        h.make_tensor_value_info(n, numpy_helper.from_array(a).data_type, a.shape) for n, a in inputs.items()
    ]
    names = list(inputs) + list(consts)
    outs = [f"y{i}" for i in range(outputs)]
    node = h.make_node(op, names, outs, **attrs)
    initializers = [numpy_helper.from_array(a, n) for n, a in consts.items()]
    opset, ir_version = (23, 11) if op == "Attention" else (21, 10)
    draft = h.make_model(
        h.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outs], initializers),
        opset_imports=[h.make_opsetid("", opset)],
        ir_version=ir_version,
    )
    inferred = onnx.shape_inference.infer_shapes(draft).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.output]}
    typed = [h.make_tensor_value_info(o, types.get(o) or T.FLOAT, None) for o in outs]
    graph = h.make_graph([node], "g", graph_inputs, typed, initializers)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=ir_version)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_onnx_runtime(name):
    op, inputs, attrs, consts, outputs = CASES[name]
    proto = _model(op, inputs, attrs, consts, outputs)
    expected = make_session(proto, optimize=False).run(None, dict(inputs))
    module = TrainableGraph(ir.serde.deserialize_model(proto), {})
    with torch.no_grad():
        got = module(*[torch.from_numpy(np.asarray(a)) for a in inputs.values()])
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g = g.numpy()
        assert g.shape == e.shape, (g.shape, e.shape)
        if e.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(g.astype(e.dtype), e)


def test_the_issue_list_of_ops_is_covered():
    wanted = """Split Where Expand Tile Einsum Resize Pad ConstantOfShape Range Equal Less Greater Min Max Abs Log
    Floor Ceil ReduceL2 InstanceNormalization GroupNormalization Softplus CumSum LSTM""".split()
    assert [op for op in wanted if op not in OPS] == []


def test_an_unknown_op_is_refused_before_training_naming_it():
    proto = h.make_model(
        h.make_graph(
            [h.make_node("Det", ["x"], ["y"], name="det1")],
            "g",
            [h.make_tensor_value_info("x", T.FLOAT, [2, 2])],
            [h.make_tensor_value_info("y", T.FLOAT, [])],
        ),
        opset_imports=[h.make_opsetid("", 21)],
    )
    with pytest.raises(ModelError, match=r"QAT cannot train through op\(s\) Det \(node det1\)"):
        TrainableGraph(ir.serde.deserialize_model(proto), {})


def test_gather_of_a_scalar_index_gives_a_scalar():
    """Shape arithmetic (Shape -> Gather[0]) in real exports takes one element of a 1-D tensor."""
    proto = _model("Gather", {"x": np.arange(4, dtype=np.int64) + 3}, {"axis": 0}, {"i": np.array(2, np.int64)}, 1)
    module = TrainableGraph(ir.serde.deserialize_model(proto), {})
    (got,) = module(torch.arange(4) + 3)
    assert got.ndim == 0 and int(got) == 5
