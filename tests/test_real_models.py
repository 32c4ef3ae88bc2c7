"""Traits of models exported by other tools: each quantizes, runs in ONNX Runtime, keeps
what it cannot quantize in float with a note, and stays close to the float model."""

from __future__ import annotations

import builders as b
import numpy as np
import pytest

import mpqc


def _data(proto, n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    dims = [d.dim_value or 1 for d in proto.graph.input[0].type.tensor_type.shape.dim]
    return {proto.graph.input[0].name: b.rng(seed).rand(n, *dims[1:]).astype(np.float32)}


@pytest.mark.parametrize(
    "build,note",
    [
        (b.constant_weights, None),
        (lambda: b.conv_relu_gemm(opset=11), None),
        (lambda: b.conv_relu_gemm(opset=20, batch="N"), None),
        (b.unknown_op, "Hardmax"),
        (b.with_if, None),
    ],
)
@pytest.mark.parametrize("scheme", ["w8a8", "w4a8"])
def test_traits_quantize_and_stay_close(build, note, scheme):
    proto = build()
    result = mpqc.quantize(proto, scheme, _data(proto), test_data=_data(proto, seed=1))
    assert result.quant_eval.cosine >= (0.98 if scheme == "w8a8" else 0.9)
    if note:
        assert any(note in n for n in result.notes)


def test_fixed_batch_of_one_is_fed_one_sample_at_a_time():
    proto = b.conv_relu_gemm(batch=1)
    result = mpqc.quantize(proto, "w8a8", _data(proto, n=10), test_data=_data(proto, n=7, seed=3))
    assert result.quant_eval.samples == 7


def test_token_ids_next_to_floats_with_attention_layernorm_gelu_prelu():
    proto = b.token_model()
    result = mpqc.quantize(proto, "w8a8", b.token_data(), test_data=b.token_data(seed=9))
    assert [layer.name for layer in result.analysis.layers] == ["feat_proj", "q_proj", "k_proj", "fc1", "fc2"]
    assert result.quant_eval.cosine >= 0.98
    assert sum("both inputs are activations" in n for n in result.notes) == 2


def test_zoo_transformer_w8a8_keeps_the_output():
    from mpqc.models import zoo_path

    result = mpqc.quantize(zoo_path("transformer"), "w8a8")
    assert result.quant_eval.cosine >= 0.98
    assert result.quant_eval.top1 >= result.float_eval.top1 - 0.01


def test_layers_inside_if_branches_are_calibrated_and_quantized():
    """Both branches hold a MatMul; the data takes one branch for some samples and the other
    for the rest, so both are calibrated and both quantized."""
    import onnx_ir as ir

    proto = b.with_if()
    x = b.rng(7).randn(40, 1, 4, 4).astype(np.float32)  # the branch follows the sign of a sum
    result = mpqc.quantize(proto, "w8a8", {"x": x}, test_data={"x": b.rng(8).randn(20, 1, 4, 4).astype(np.float32)})
    model = ir.serde.deserialize_model(result.model)
    for node in model.graph:
        if node.op_type == "If":
            for branch in ("then_branch", "else_branch"):
                matmul = next(n for n in node.attributes[branch].value if n.op_type == "MatMul")
                activation, weight = matmul.inputs[0].producer(), matmul.inputs[1].producer()
                assert activation.op_type == "DequantizeLinear"  # the int8 region's, in the main graph
                while weight.op_type != "DequantizeLinear":  # through the fusion guard
                    weight = weight.inputs[0].producer()
                assert weight.inputs[0].const_value.dtype == ir.DataType.INT8
    assert result.quant_eval.cosine > 0.99


def test_a_branch_that_never_ran_keeps_its_activation_in_float_and_says_so():
    proto = b.with_if(inner_activation=True)
    x = np.abs(b.rng(7).randn(24, 1, 4, 4)).astype(np.float32)
    conv_w = next(t for t in proto.graph.initializer if t.name == "w")
    conv_w.CopyFrom(
        __import__("onnx").numpy_helper.from_array(np.abs(b.rng(5).randn(2, 1, 3, 3)).astype(np.float32), "w")
    )
    result = mpqc.quantize(proto, "w8a8", {"x": x})  # positive data, positive weights: only then_branch runs
    assert any("else_mm left in float" in n and "never ran" in n for n in result.notes)
    assert not any("then_mm" in n for n in result.notes)
