from __future__ import annotations

import builders as b
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from mpqc.passes.insert_qdq import InsertQDQPass
from mpqc.passes.upgrade_opset import UpgradeOpsetPass

import mpqc
from mpqc.scheme import Scheme
from mpqc.workload import Workload


def _quantized(scheme, proto=None) -> ir.Model:
    proto = proto or b.conv_relu_gemm()
    x = b.rng(0).randn(32, 3, 8, 8).astype(np.float32)
    return ir.serde.deserialize_model(mpqc.quantize(proto, scheme, {"x": x}, evaluate=False).model)


def _ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def test_w8a8_region_absorbs_relu_and_quantizes_bias_to_int32():
    model = _quantized("w8a8")
    assert "Relu" not in _ops(model)  # folded into the uint8 zero point of the conv output
    conv = next(n for n in model.graph if n.op_type == "Conv")
    bias_dq = conv.inputs[2].producer()
    assert bias_dq.op_type == "DequantizeLinear"
    assert bias_dq.inputs[0].const_value.dtype == ir.DataType.INT32
    conv_out_q = conv.outputs[0].uses()[0].node
    assert conv_out_q.op_type == "QuantizeLinear" and conv_out_q.inputs[2].const_value.numpy() == 0


def test_value_moving_ops_share_their_input_quantizer():
    model = _quantized("w8a8")
    flat = next(n for n in model.graph if n.op_type == "Flatten")
    dq_in = flat.inputs[0].producer()
    q_out = flat.outputs[0].uses()[0].node
    assert q_out.op_type == "QuantizeLinear"
    np.testing.assert_array_equal(dq_in.inputs[1].const_value.numpy(), q_out.inputs[1].const_value.numpy())
    np.testing.assert_array_equal(dq_in.inputs[2].const_value.numpy(), q_out.inputs[2].const_value.numpy())


def test_sub_8_bit_layers_keep_relu_and_float_bias():
    model = _quantized("w4a8")
    assert "Relu" in _ops(model)
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.inputs[2].const_value is not None  # float bias, no DequantizeLinear


def test_two_bit_weights_are_guarded_against_the_ort_fusion_bug():
    model = _quantized("w2a8")
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.inputs[1].producer().op_type == "Reshape"
    assert model.opset_imports[""] == 25


def test_float_layers_are_untouched():
    names = ["conv1", "fc"]
    model = _quantized(Scheme.from_json({"layers": {"conv1": "float", "fc": "w8a8"}}, names))
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.inputs[1].const_value is not None and conv.inputs[0].producer() is None


def test_requires_opset_21():
    model = ir.serde.deserialize_model(b.conv_relu_gemm(opset=17))
    prepared = mpqc.prepare(b.conv_relu_gemm())
    calibration = Workload.build(prepared, {"x": b.rng(0).randn(4, 3, 8, 8).astype(np.float32)}).calibration
    with pytest.raises(ir.passes.PreconditionError):
        InsertQDQPass(prepared.analysis, Scheme.parse("w8a8", prepared.analysis.layer_names), calibration)(model)


def test_sub_8_bit_activations_run_the_same_with_and_without_ort_fusion(prepared_default):
    """Without the weight guard, ONNX Runtime 1.32 fused 4-bit-activation layers into
    QLinearConv and changed the results (97.33% unfused, 98.00% fused on the test split)."""
    from mpqc.runtime import Runner, make_session
    from mpqc.signature import input_specs

    data = Workload.build(prepared_default).splits.test.take(64)
    specs = input_specs(prepared_default.model)
    for scheme in ("w4a4", "w8a4", "w2a8"):
        model = mpqc.quantize(prepared_default, scheme, evaluate=False).model
        fused = Runner(make_session(model), specs).run(data)[0]
        reference = Runner(make_session(model, optimize=False), specs).run(data)[0]
        np.testing.assert_allclose(fused, reference, rtol=1e-4, atol=1e-4 * float(np.abs(reference).max()))


def _through(op: str) -> onnx.ModelProto:
    """conv -> a value-moving op -> conv: the shape where ONNX Runtime moves a low-bit Q."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    r = b.rng(3)
    inits = [
        nh.from_array(r.randn(8, 3, 3, 3).astype(np.float32) * 0.3, "w1"),
        nh.from_array(r.randn(4, 8, 3, 3).astype(np.float32) * 0.3, "w2"),
        nh.from_array(np.array([0], np.int64), "st"),
        nh.from_array(np.array([4], np.int64), "en"),
        nh.from_array(np.array([2], np.int64), "ax"),
    ]
    middle = {
        "MaxPool": h.make_node("MaxPool", ["a"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        "Slice": h.make_node("Slice", ["a", "st", "en", "ax"], ["m"]),
        "Transpose": h.make_node("Transpose", ["a"], ["m"], perm=[0, 1, 3, 2]),
    }[op]
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="c1"),
        middle,
        h.make_node("Conv", ["m", "w2"], ["y"], pads=[1, 1, 1, 1], name="c2"),
    ]
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 8, 8])],
        [h.make_tensor_value_info("y", T.FLOAT, ["N", 4, None, None])],
        inits,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["MaxPool", "Slice", "Transpose"])
@pytest.mark.parametrize("scheme", ["w4a4", "w2a2", "w8a4"])
def test_low_bit_activations_behind_value_moving_ops_load_and_keep_their_grid(op, scheme):
    """ONNX Runtime 1.32 refused 4/2-bit activations behind MaxPool and Slice (its QDQ
    propagation moves the Q in front of an op with no low-bit kernel). mpqc holds such a grid
    in an 8-bit container: the model loads, and computes what the b-bit graph says."""
    from mpqc.emit import emit
    from mpqc.runtime import make_session

    proto = _through(op)
    x = b.rng(4).randn(24, 3, 8, 8).astype(np.float32)
    work = Workload.build(proto, {"x": x}, val_data={"x": x}, test_data={"x": x})
    bound = Scheme.parse(scheme, work.prepared.analysis.layer_names)
    held = emit(work.prepared, bound, work.calibration, work.recipe, check=True)
    ops = [n.op_type for n in held.model.graph]
    if op in ("MaxPool", "Slice"):
        assert "Clip" in ops  # the container
    out = make_session(held.payload()).run(None, {"x": x})[0]
    plain = InsertQDQPass(work.prepared.analysis, bound, work.calibration, work.recipe)(
        UpgradeOpsetPass(25)(work.prepared.copy()).model
    ).model
    reference = make_session(plain, optimize=False).run(None, {"x": x})[0]  # the b-bit graph, as written
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4 * float(np.abs(reference).max()))


def _linear(scheme: str):
    proto = b.linear_stack()
    x = b.rng(1).randn(64, 64).astype(np.float32)
    result = mpqc.quantize(proto, scheme, {"x": x}, evaluate=False)
    return ir.serde.deserialize_model(result.model), x, proto, result


def _optimized_ops(model: ir.Model, tmp_path) -> list[str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(
        ir.serde.serialize_model(model).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]


def _close_to_float(model: ir.Model, proto, x, tolerance: float) -> None:
    import onnxruntime as ort

    quantized = ort.InferenceSession(ir.serde.serialize_model(model).SerializeToString()).run(None, {"x": x})[0]
    reference = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0]
    error = np.abs(quantized - reference).max() / np.abs(reference).max()
    assert error < tolerance, error


def test_dynamic_form_reads_through_dynamic_quantize_and_fuses(tmp_path):
    model, x, proto, _ = _linear("w8a8d")
    ops = _ops(model)
    assert ops.count("DynamicQuantizeLinear") == 2 and "QuantizeLinear" not in ops
    assert "Gemm" not in ops and "Add" in ops  # the Gemm became MatMul + Add, named as the layer
    fc1 = next(n for n in model.graph if n.name == "fc1")
    assert fc1.op_type == "MatMul"
    weight = fc1.inputs[1].producer()
    assert weight.inputs[0].const_value.dtype == ir.DataType.INT8 and weight.attributes.get_int("axis") == 1
    optimized = _optimized_ops(model, tmp_path)
    assert optimized.count("DynamicQuantizeMatMul") + optimized.count("MatMulIntegerToFloat") == 2, optimized
    _close_to_float(model, proto, x, 0.03)


def test_nbits_form_is_a_blocked_dequantize_that_fuses_into_matmulnbits(tmp_path):
    model, x, proto, result = _linear("w4nb")
    dqs = [n for n in model.graph if n.op_type == "DequantizeLinear"]
    assert len(dqs) == 2 and all(n.attributes.get_int("block_size") == 32 for n in dqs)
    assert all(n.attributes.get_int("axis") == 0 for n in dqs)
    fc1_weight = next(n for n in dqs if n.metadata_props["mpqc.layer"] == "fc1")
    assert fc1_weight.inputs[1].const_value.numpy().shape == (2, 128)  # K = 64 in blocks of 32, N = 128
    assert _optimized_ops(model, tmp_path).count("MatMulNBits") == 2
    _close_to_float(model, proto, x, 0.15)
    assert result.weight_bytes == (64 * 128 + 128 * 32) // 2 + 4 * (2 * 128 + 4 * 32)  # levels + block scales


def test_forms_leave_convolutions_in_float_with_a_note():
    result = mpqc.quantize(b.conv_relu_gemm(), "w8a8d", {"x": b.rng(0).randn(16, 3, 8, 8).astype(np.float32)})
    assert result.scheme["conv1"].is_float and result.scheme["fc"].label == "w8a8d"
    assert any(
        "w8a8d applies to MatMul/Gemm layers only (nbits: whole blocks along K): 1 Conv" in n for n in result.notes
    )


def test_nbits_needs_whole_blocks_along_k():
    """OpenVINO refuses a blocked DequantizeLinear with a partial block: conv_relu_gemm's Gemm
    has K = 8, less than a block of 16, and stays in float; the linear stack's K = 64 and 128 take it."""
    from mpqc.analysis import takes_form

    fc = mpqc.prepare(b.conv_relu_gemm()).analysis.layer("fc")
    assert takes_form(fc, "dynamic") and not takes_form(fc, "nbits", 16)
    linear = mpqc.prepare(b.linear_stack()).analysis
    assert all(takes_form(layer, "nbits", 32) for layer in linear.layers)
    assert not takes_form(linear.layer("fc1"), "nbits", 128)  # K = 64


def test_a_form_on_a_convolution_is_refused_by_the_pass():
    prepared = mpqc.prepare(b.conv_relu_gemm())
    work = Workload.build(prepared, {"x": b.rng(0).randn(16, 3, 8, 8).astype(np.float32)})
    scheme = Scheme.parse("w8a8d", prepared.analysis.layer_names)
    with pytest.raises(mpqc.MpqcError, match="conv1: w8a8d applies to MatMul/Gemm"):
        work.emit(scheme)


def test_int8_region_runs_through_silu_and_split():
    """Conv -> Sigmoid, Mul (SiLU) -> Split -> two Convs: the SiLU gets quantizers of its own
    and every part of the Split keeps its input's grid, so ORT keeps the block in int8."""
    from onnx import TensorProto as T
    from onnx import helper as h

    r = b.rng(2)
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        h.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        h.make_node("Mul", ["c", "s"], ["silu"], name="silu"),
        h.make_node("Split", ["silu", "parts"], ["p0", "p1"], axis=1, name="split"),
        h.make_node("Conv", ["p0", "w2"], ["y0"], name="conv2"),
        h.make_node("Conv", ["p1", "w3"], ["y1"], name="conv3"),
        h.make_node("Add", ["y0", "y1"], ["y"], name="add"),
    ]
    inits = [
        b.init("w1", r.randn(8, 3, 3, 3).astype(np.float32) * 0.3),
        b.init("parts", np.array([4, 4], np.int64)),
        b.init("w2", r.randn(4, 4, 1, 1).astype(np.float32) * 0.3),
        b.init("w3", r.randn(4, 4, 1, 1).astype(np.float32) * 0.3),
    ]
    proto = b.model(
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 8, 8])],
        inits,
        opset=18,
    )
    model = _quantized("w8a8", proto)
    by_name = {n.name: n for n in model.graph}
    for op in ("sig", "silu"):
        assert by_name[op].outputs[0].uses()[0].node.op_type == "QuantizeLinear"
    split = next(n for n in model.graph if n.op_type == "Split")
    scales = {tuple(np.atleast_1d(p.uses()[0].node.inputs[1].const_value.numpy())) for p in split.outputs}
    source = split.inputs[0].producer()
    assert source.op_type == "DequantizeLinear" and len(scales) == 1
    assert scales == {tuple(np.atleast_1d(source.inputs[1].const_value.numpy()))}
