"""Small ONNX models built in code, each with one trait real exported models have."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def rng(seed: int = 0) -> np.random.RandomState:
    return np.random.RandomState(seed)


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return nh.from_array(np.asarray(array), name)


def model(nodes, inputs, outputs, inits=(), opset: int = 17, ir_version: int | None = None) -> onnx.ModelProto:
    graph = h.make_graph(list(nodes), "g", list(inputs), list(outputs), list(inits))
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = ir_version or h.find_min_ir_version_for([h.make_opsetid("", opset)])
    return m


def conv_relu_gemm(opset: int = 17, batch: int | str = 1, seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, input 1x3x8x8."""
    r = rng(seed)
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        h.make_node("GlobalAveragePool", ["r1"], ["p"], name="gap"),
        h.make_node("Flatten", ["p"], ["f"], name="flat"),
        h.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1, name="fc"),
    ]
    inits = [
        init("w1", r.randn(8, 3, 3, 3).astype(np.float32) * 0.3),
        init("b1", r.randn(8).astype(np.float32) * 0.1),
        init("w2", r.randn(5, 8).astype(np.float32) * 0.3),
        init("b2", r.randn(5).astype(np.float32) * 0.1),
    ]
    x = h.make_tensor_value_info("x", T.FLOAT, [batch, 3, 8, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [batch, 5])
    return model(nodes, [x], [y], inits, opset)


def constant_weights() -> onnx.ModelProto:
    """Weights in Constant nodes, as some exporters emit them."""
    r = rng(1)
    w = r.randn(4, 3, 3, 3).astype(np.float32) * 0.3
    nodes = [
        h.make_node("Constant", [], ["w"], value=nh.from_array(w, "wv"), name="wconst"),
        h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        h.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return model(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 6, 6])],
        opset=13,
    )


def no_layers() -> onnx.ModelProto:
    nodes = [h.make_node("Relu", ["x"], ["y"], name="relu")]
    return model(
        nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 4])], [h.make_tensor_value_info("y", T.FLOAT, [1, 4])]
    )


def unknown_op() -> onnx.ModelProto:
    """A Conv, then an op mpqc's analysis does not know (Hardmax), then a Gemm."""
    r = rng(2)
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["c"], name="conv"),
        h.make_node("Flatten", ["c"], ["f"], name="flat"),
        h.make_node("Hardmax", ["f"], ["hm"], name="odd"),
        h.make_node("Add", ["f", "hm"], ["s"], name="add"),
        h.make_node("Gemm", ["s", "w2"], ["y"], transB=1, name="fc"),
    ]
    inits = [init("w1", r.randn(2, 1, 3, 3).astype(np.float32)), init("w2", r.randn(3, 8).astype(np.float32))]
    return model(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 3])],
        inits,
    )


def token_model() -> onnx.ModelProto:
    """Two inputs: int64 token ids (embedding Gather) and a float feature tensor; symbolic
    batch and sequence; LayerNormalization, Gelu, PRelu; an attention MatMul between
    activations; linear layers as MatMul with constant weights."""
    r = rng(3)
    d = 16
    nodes = [
        h.make_node("Gather", ["emb", "ids"], ["e"], axis=0, name="embed"),
        h.make_node("MatMul", ["feat", "wf"], ["fp"], name="feat_proj"),
        h.make_node("Add", ["e", "fp"], ["x0"], name="merge"),
        h.make_node("LayerNormalization", ["x0", "ln_s", "ln_b"], ["x1"], axis=-1, name="ln"),
        h.make_node("MatMul", ["x1", "wq"], ["q"], name="q_proj"),
        h.make_node("MatMul", ["x1", "wk"], ["k"], name="k_proj"),
        h.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kT"),
        h.make_node("MatMul", ["q", "kt"], ["att"], name="scores"),
        h.make_node("Softmax", ["att"], ["p"], axis=-1, name="softmax"),
        h.make_node("MatMul", ["p", "x1"], ["ctx"], name="mix"),
        h.make_node("MatMul", ["ctx", "w1"], ["h1"], name="fc1"),
        h.make_node("Gelu", ["h1"], ["g"], name="gelu"),
        h.make_node("PRelu", ["g", "slope"], ["pr"], name="prelu"),
        h.make_node("MatMul", ["pr", "w2"], ["y"], name="fc2"),
    ]
    inits = [
        init("emb", r.randn(20, d).astype(np.float32)),
        init("wf", r.randn(4, d).astype(np.float32) * 0.5),
        init("ln_s", np.ones(d, np.float32)),
        init("ln_b", np.zeros(d, np.float32)),
        init("wq", r.randn(d, d).astype(np.float32) * 0.25),
        init("wk", r.randn(d, d).astype(np.float32) * 0.25),
        init("w1", r.randn(d, 2 * d).astype(np.float32) * 0.25),
        init("slope", np.full(2 * d, 0.1, np.float32)),
        init("w2", r.randn(2 * d, 6).astype(np.float32) * 0.25),
    ]
    inputs = [
        h.make_tensor_value_info("ids", T.INT64, ["batch", "seq"]),
        h.make_tensor_value_info("feat", T.FLOAT, ["batch", "seq", 4]),
    ]
    return model(nodes, inputs, [h.make_tensor_value_info("y", T.FLOAT, ["batch", "seq", 6])], inits, opset=20)


def token_data(n: int = 64, seq: int = 5, seed: int = 4) -> dict[str, np.ndarray]:
    r = rng(seed)
    return {"ids": r.randint(0, 20, size=(n, seq)).astype(np.int64), "feat": r.randn(n, seq, 4).astype(np.float32)}


def with_if(inner_activation: bool = False) -> onnx.ModelProto:
    """A Conv in the main graph and a MatMul inside both branches of an If; with
    `inner_activation` each MatMul reads a tensor computed inside its branch (a Relu)."""
    r = rng(5)
    then_nodes = [h.make_node("MatMul", ["f", "wt"], ["o"], name="then_mm")]
    else_nodes = [h.make_node("MatMul", ["f", "we"], ["o2"], name="else_mm")]
    if inner_activation:
        then_nodes = [
            h.make_node("Relu", ["f"], ["rt"], name="then_relu"),
            h.make_node("MatMul", ["rt", "wt"], ["o"], name="then_mm"),
        ]
        else_nodes = [
            h.make_node("Relu", ["f"], ["re"], name="else_relu"),
            h.make_node("MatMul", ["re", "we"], ["o2"], name="else_mm"),
        ]
    then_g = h.make_graph(
        then_nodes,
        "then",
        [],
        [h.make_tensor_value_info("o", T.FLOAT, [1, 3])],
        [init("wt", r.randn(8, 3).astype(np.float32))],
    )
    else_g = h.make_graph(
        else_nodes,
        "else",
        [],
        [h.make_tensor_value_info("o2", T.FLOAT, [1, 3])],
        [init("we", r.randn(8, 3).astype(np.float32))],
    )
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        h.make_node("Flatten", ["c"], ["f"], name="flat"),
        h.make_node("ReduceSum", ["f"], ["s"], keepdims=0, name="sum"),
        h.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
        h.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
    ]
    inits = [init("w", r.randn(2, 1, 3, 3).astype(np.float32)), init("zero", np.array(0.0, np.float32))]
    return model(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 3])],
        inits,
        opset=17,
    )


def dangling() -> onnx.ModelProto:
    """A node reading a value nothing produces: the checker refuses it."""
    nodes = [h.make_node("Relu", ["nowhere"], ["y"], name="relu")]
    return model(
        nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 4])], [h.make_tensor_value_info("y", T.FLOAT, [1, 4])]
    )


def _external(location: str) -> bytes:
    proto = conv_relu_gemm()
    weight = proto.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    return proto.SerializeToString()


def external_outside() -> bytes:
    """Weights said to lie outside the model's folder (path traversal)."""
    return _external("../../../../etc/passwd")


def external_missing() -> bytes:
    """Weights said to lie in a file that is not there."""
    return _external("weights.bin")


def linear_stack(d: int = 64, hidden: int = 128, out: int = 32) -> onnx.ModelProto:
    """x [batch, d] -> Gemm (transB, alpha 0.5, beta 2) -> Relu -> MatMul -> y: the linear
    layers the dynamic and n-bit forms apply to, wide enough for ONNX Runtime's fusions."""
    r = rng(5)
    nodes = [
        h.make_node("Gemm", ["x", "w1", "b1"], ["g"], transB=1, alpha=0.5, beta=2.0, name="fc1"),
        h.make_node("Relu", ["g"], ["r"], name="relu"),
        h.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    inits = [
        init("w1", r.randn(hidden, d).astype(np.float32) * 0.2),
        init("b1", r.randn(hidden).astype(np.float32) * 0.1),
        init("w2", r.randn(hidden, out).astype(np.float32) * 0.1),
    ]
    x = h.make_tensor_value_info("x", T.FLOAT, ["batch", d])
    y = h.make_tensor_value_info("y", T.FLOAT, ["batch", out])
    return model(nodes, [x], [y], inits, opset=21)
