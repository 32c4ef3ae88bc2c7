from __future__ import annotations

import builders as b
import onnx_ir as ir
from mpqc.passes import AnalyzeLayersPass

from mpqc.frontend import prepare


def run_front_end(model):
    prepared = prepare(model)
    return prepared.model, prepared.analysis


def test_finds_layers_with_macs_params_and_axes():
    model, analysis = run_front_end(ir.serde.deserialize_model(b.conv_relu_gemm()))
    conv, fc = analysis.layers
    assert (conv.name, conv.op_type, conv.channel_axis, conv.weight_shape) == ("conv1", "Conv", 0, (8, 3, 3, 3))
    assert conv.macs == 8 * 8 * 8 * 3 * 3 * 3
    assert conv.params == 8 * 3 * 3 * 3 + 8
    assert (fc.op_type, fc.channel_axis, fc.macs) == ("Gemm", 0, 5 * 8)
    assert analysis.total_macs == conv.macs + fc.macs


def test_depthwise_and_shared_quantizer_groups(prepared_default):
    analysis = prepared_default.analysis
    assert sum(layer.depthwise for layer in analysis.layers) == 1
    # Flatten moves values: its input and output share one quantizer in an int8 region
    assert any(len(group) == 2 for group in analysis.shared_quantizers)


def test_residual_add_inputs_are_reported_as_combined():
    from mpqc.models import zoo_path

    _, analysis = run_front_end(ir.load(zoo_path("resnet8")))
    assert len(analysis.combined_inputs) == 3  # one Add per residual block


def test_attention_matmul_and_unknown_ops_are_noted_not_fatal():
    _, analysis = run_front_end(ir.serde.deserialize_model(b.token_model()))
    assert [layer.name for layer in analysis.layers] == ["feat_proj", "q_proj", "k_proj", "fc1", "fc2"]
    assert any("scores" in n and "both inputs are activations" in n for n in analysis.notes)
    _, odd = run_front_end(ir.serde.deserialize_model(b.unknown_op()))
    assert any("Hardmax" in n for n in odd.notes)


def test_layers_inside_if_branches_are_found_with_their_scope():
    _, analysis = run_front_end(ir.serde.deserialize_model(b.with_if()))
    assert sorted((layer.name, layer.scope) for layer in analysis.layers) == [
        ("conv", ""),
        ("else_mm", "branch.else_branch"),
        ("then_mm", "branch.then_branch"),
    ]
    assert {"f"} <= set(analysis.activation_tensors)


def test_analysis_pass_changes_nothing():
    model = ir.serde.deserialize_model(b.conv_relu_gemm())
    before = ir.serde.serialize_model(model).SerializeToString()
    result = AnalyzeLayersPass()(model)
    assert not result.modified and result.analysis is not None
    assert ir.serde.serialize_model(model).SerializeToString() == before
