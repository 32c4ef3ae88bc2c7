from __future__ import annotations

import builders as b
import numpy as np
import onnx_ir as ir
import pytest
from mpqc.passes import FuseAttentionPass, InferShapesPass
from mpqc.passes.fuse_attention import Size, _reshape
from onnx import TensorProto as T
from onnx import helper as h

import mpqc
from mpqc.runtime import make_session

HEADS, HEAD = 2, 4
WIDTH = HEADS * HEAD


def _attention(
    k_split: tuple[int, int] = (HEADS, HEAD),
    k_perm: tuple[int, ...] = (0, 2, 3, 1),
    scores_out: bool = False,
    opset: int = 21,
    mask_rows: str = "seq",
    unsqueezed_mask: bool = False,
) -> ir.Model:
    """x [batch, seq, 8] -> Q, K, V projections -> per-head attention spelt as HF's eager
    BERT exports it (Reshape [0, 0, heads, head], Transpose, MatMul, Div by sqrt(head), Add
    mask, Softmax, MatMul, Transpose, Reshape [0, 0, 8]) -> output projection."""
    r = b.rng(0)
    nodes = []
    inits = [b.init(f"w{n}", r.randn(WIDTH, WIDTH).astype(np.float32)) for n in "qkvo"]
    inits += [b.init(f"b{n}", r.randn(WIDTH).astype(np.float32)) for n in "qkv"]
    inits += [
        b.init("split", np.array([0, 0, HEADS, HEAD], np.int64)),
        b.init("k_split", np.array([0, 0, *k_split], np.int64)),
        b.init("merge", np.array([0, 0, WIDTH], np.int64)),
        b.init("root", np.array(np.sqrt(HEAD), np.float32)),
    ]
    for n in "qkv":
        nodes += [
            h.make_node("MatMul", ["x", f"w{n}"], [f"{n}m"], name=f"{n}_proj"),
            h.make_node("Add", [f"{n}m", f"b{n}"], [n], name=f"{n}_bias"),
            h.make_node("Reshape", [n, "k_split" if n == "k" else "split"], [f"{n}h"], name=f"{n}_heads"),
        ]
    nodes += [
        h.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3], name="q_t"),
        h.make_node("Transpose", ["kh"], ["kt"], perm=list(k_perm), name="k_t"),
        h.make_node("Transpose", ["vh"], ["vt"], perm=[0, 2, 1, 3], name="v_t"),
        h.make_node("MatMul", ["qt", "kt"], ["s"], name="scores"),
        h.make_node("Div", ["s", "root"], ["sd"], name="scale"),
        h.make_node("Add", ["sd", "mask4" if unsqueezed_mask else "mask"], ["sm"], name="mask_add"),
        h.make_node("Softmax", ["sm"], ["p"], axis=-1, name="softmax"),
        h.make_node("MatMul", ["p", "vt"], ["o"], name="context"),
        h.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3], name="o_t"),
        h.make_node("Reshape", ["ot", "merge"], ["om"], name="o_merge"),
        h.make_node("MatMul", ["om", "wo"], ["y"], name="o_proj"),
    ]
    rows = "seq" if mask_rows == "seq" else 1
    inputs = [
        h.make_tensor_value_info("x", T.FLOAT, ["batch", "seq", WIDTH]),
        h.make_tensor_value_info("mask", T.FLOAT, ["batch", 1, rows, "seq"]),
    ]
    if unsqueezed_mask:  # a [b, t] additive mask input, unsqueezed in the graph (a shape op feeds the mask)
        inputs[1] = h.make_tensor_value_info("mask", T.FLOAT, ["batch", "seq"])
        inits.append(b.init("mask_axes", np.array([1, 2], np.int64)))
        nodes.insert(0, h.make_node("Unsqueeze", ["mask", "mask_axes"], ["mask4"], name="mask_unsqueeze"))
    outputs = [h.make_tensor_value_info("y", T.FLOAT, None)]
    if scores_out:
        outputs.append(h.make_tensor_value_info("s", T.FLOAT, None))
    model = ir.serde.deserialize_model(b.model(nodes, inputs, outputs, inits, opset=opset))
    return InferShapesPass()(model).model


def _feed(batch: int = 3, seq: int = 5, rows: int | None = None, masked: float = -np.inf) -> dict[str, np.ndarray]:
    r = b.rng(1)
    lengths = np.array([seq, 2, 1])[:batch]
    keep = np.arange(seq)[None, :] < lengths[:, None]
    mask = np.where(keep, 0.0, masked).astype(np.float32)[:, None, None, :]
    mask = np.broadcast_to(mask, (batch, 1, rows or seq, seq)).copy()
    return {"x": r.randn(batch, seq, WIDTH).astype(np.float32), "mask": mask}


def _run(model: ir.Model, feed: dict[str, np.ndarray]) -> np.ndarray:
    return make_session(model, optimize=False).run(None, feed)[0]


def test_eager_attention_becomes_one_attention_node_with_the_same_outputs():
    model = _attention()
    before = {shape: _run(model, _feed(*shape)) for shape in ((3, 5), (2, 9))}
    result = FuseAttentionPass()(model)
    assert result.modified and result.model.opset_imports[""] == 23
    ops = [n.op_type for n in result.model.graph]
    assert ops.count("Attention") == 1
    assert not {"Softmax", "Transpose", "Div"} & set(ops), ops
    (node,) = [n for n in result.model.graph if n.op_type == "Attention"]
    assert node.attributes["q_num_heads"].value == HEADS and node.attributes["kv_num_heads"].value == HEADS
    assert node.attributes["scale"].value == pytest.approx(1 / np.sqrt(HEAD))
    for shape, expected in before.items():  # any batch and sequence: the match is symbolic
        np.testing.assert_allclose(_run(result.model, _feed(*shape)), expected, rtol=1e-5, atol=1e-5)


def test_what_is_not_exactly_multi_head_attention_stays():
    # K split into (head, heads) and transposed to the right shape: the heads do not line up with Q's
    assert not FuseAttentionPass()(_attention(k_split=(HEAD, HEADS), k_perm=(0, 3, 2, 1))).modified
    assert not FuseAttentionPass()(_attention(scores_out=True)).modified  # the scores are read elsewhere
    assert not FuseAttentionPass()(_attention(opset=18)).modified  # only raised to 23 from 21 on


def test_a_padding_mask_over_keys_only_is_expanded_over_the_queries():
    """HF's [b, 1, 1, t] mask: ONNX Runtime's kernel does not broadcast the query axis."""
    model = _attention(mask_rows="one")
    before = {shape: _run(model, _feed(*shape, rows=1)) for shape in ((3, 5), (2, 9))}
    result = FuseAttentionPass()(model)
    ops = [n.op_type for n in result.model.graph]
    assert result.modified and ops.count("Attention") == 1 and "Expand" in ops
    for shape, expected in before.items():
        np.testing.assert_allclose(_run(result.model, _feed(*shape, rows=1)), expected, rtol=1e-5, atol=1e-5)


def test_a_mask_made_by_a_shape_op_stays_to_feed_the_attention():
    model = _attention(unsqueezed_mask=True)
    feed = _feed(rows=1)
    feed["mask"] = feed["mask"][:, 0, 0, :]
    before = _run(model, feed)
    result = FuseAttentionPass()(model)
    assert result.modified and "Unsqueeze" in [n.op_type for n in result.model.graph]
    np.testing.assert_allclose(_run(result.model, feed), before, rtol=1e-5, atol=1e-5)


def test_per_head_tensors_fuse_as_four_dimensional_attention():
    """Our zoo transformer packs Q, K and V in one Gemm, split per head by Reshape,
    Transpose, Split and Squeeze: no 3-D projection to start from, so Attention takes the
    [b, h, s, d] tensors and the head merge stays."""
    from mpqc.models import zoo_path

    plain = mpqc.prepare(zoo_path("transformer"), fuse_attention=False)
    fused = FuseAttentionPass()(plain.copy()).model
    (node,) = [n for n in fused.graph if n.op_type == "Attention"]
    assert "q_num_heads" not in node.attributes and "Softmax" not in [n.op_type for n in fused.graph]
    x = b.rng(3).randn(4, 8, 8).astype(np.float32)
    np.testing.assert_allclose(
        make_session(fused, optimize=False).run(None, {"input": x})[0],
        make_session(plain.model, optimize=False).run(None, {"input": x})[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_a_query_with_every_key_masked_out_gets_zeros():
    """The one documented difference: the kernel gives zeros (as SDPA's NaN guard does for a
    -inf mask), where the unfused graph with a lowest-float mask averages the values."""
    model = _attention()
    feed = _feed()
    feed["mask"][2] = np.finfo(np.float32).min
    before = _run(model, feed)
    after = _run(FuseAttentionPass()(model).model, feed)
    np.testing.assert_allclose(after[:2], before[:2], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(after[2], 0.0)  # no bias after the output projection here
    assert np.abs(before[2]).max() > 0.1


def test_reshapes_split_and_merge_symbolic_and_known_sizes():
    batch, seq = Size(1, ("batch",)), Size(1, ("seq",))
    layout = [(("b", batch),), (("s", seq),), (("c", Size(12)),)]
    split = _reshape(layout, [Size(0 + 1, ("batch",)), "copy", Size(3), "infer"])
    assert split == [(("b", batch),), (("s", seq),), (("c/0", Size(3)),), (("c/1", Size(4)),)]
    merged = _reshape(split, ["infer", Size(4)])
    assert merged == [(("b", batch), ("s", seq), ("c/0", Size(3))), (("c/1", Size(4)),)]
    assert _reshape(layout, [Size(5), "infer"]) is None  # 5 divides nothing


def test_the_front_end_fuses_every_layer_of_an_exported_bert_unless_told_not_to(tmp_path):
    """torch's dynamo export: K's transpose spelt as Reshape-Transpose-Reshape with targets
    computed from Shape ops, a NaN guard after the Softmax, a [b, 1, s, t] mask."""
    from mpqc.models.hf_encoder import TINY, export_bert

    path, _, test = export_bert(tmp_path / "bert", TINY)
    fused, plain = mpqc.prepare(path), mpqc.prepare(path, fuse_attention=False)
    ops = [n.op_type for n in fused.model.graph]
    assert ops.count("Attention") == TINY.layers and "Softmax" not in ops
    assert "Attention" not in [n.op_type for n in plain.model.graph]
    assert len(fused.analysis.layers) == len(plain.analysis.layers)  # every projection still a layer
    assert not [n for n in fused.analysis.notes if "not known" in n]  # Attention: a known op, left in float
    assert any(n.startswith(f"{TINY.layers} attention block(s) fused") for n in fused.analysis.notes)
    feed = dict(np.load(test))
    for a, c in zip(_run_all(fused.model, feed), _run_all(plain.model, feed)):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4)


def _run_all(model: ir.Model, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return make_session(model, optimize=False).run(None, feed)


def test_tensorrt_workloads_keep_attention_unfused(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, **_feed(masked=-1e4))  # mpqc refuses data with infinities
    path = tmp_path / "attention.onnx"
    path.write_bytes(ir.serde.serialize_model(_attention()).SerializeToString())
    ops = {
        backend: [n.op_type for n in mpqc.Workload.build(path, data, backend=backend).prepared.model.graph]
        for backend in ("ort", "tensorrt")
    }
    assert "Attention" in ops["ort"] and "Attention" not in ops["tensorrt"]


def test_openvino_runs_the_fused_attention(tmp_path):
    ov = pytest.importorskip("openvino")
    fused = FuseAttentionPass()(_attention()).model
    feed = _feed()
    path = tmp_path / "fused.onnx"
    path.write_bytes(ir.serde.serialize_model(fused).SerializeToString())
    # f32: OpenVINO runs float layers in bf16 by default where the CPU has it (AMX, AVX-512
    # BF16), 0.1 off at this tolerance; the fused graph's numerics are what is checked here
    compiled = ov.Core().compile_model(ov.Core().read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(feed)[0]
    np.testing.assert_allclose(got, _run(fused, feed), rtol=1e-4, atol=1e-4)
