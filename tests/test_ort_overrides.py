"""mpqc's schemes as ONNX Runtime quantizer options and back: the options applied with ORT's
own `quantize_static` give the same per-layer precisions and comparable quality; ORT
options read as a scheme; what cannot be expressed is refused by name."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import mpqc
from mpqc.baselines import ort_quantize_with_options
from mpqc.errors import SchemeError
from mpqc.ort_overrides import scheme_from_ort_overrides, to_ort_overrides
from mpqc.workload import Workload


@pytest.fixture(scope="module")
def mixed(default_model):
    layers = mpqc.analyze(default_model).layer_names
    scheme = {"default": "w8a8", "layers": {layers[0]: "float", layers[2]: "w4a8", layers[3]: "w4a4"}}
    return default_model, layers, scheme


def test_exported_options_reproduce_the_scheme_with_ort_quantize_static(mixed, tmp_path):
    model, layers, scheme = mixed
    folder = mpqc.export_ort_options(model, scheme, output=tmp_path / "ort")
    options = json.loads((folder / "ort_options.json").read_text())
    assert options["nodes_to_exclude"] == [layers[0]]
    work = Workload.build(folder / "model.onnx")
    calib = {k: v[:128] for k, v in work.splits.train.inputs.items()}
    out = ort_quantize_with_options(folder / "model.onnx", calib, tmp_path / "ort.onnx", options)
    # the precision of each layer, read back from ORT's output: the weight DequantizeLinear's type
    graph = onnx.load(out).graph
    inits = {t.name: t for t in graph.initializer}
    weight_type = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            producer = next((n for n in graph.node if node.input[1] in n.output), None)
            q = (
                inits.get(producer.input[0])
                if producer is not None and producer.op_type == "DequantizeLinear"
                else None
            )
            weight_type[node.name] = None if q is None else q.data_type
    assert weight_type[layers[0]] is None  # float
    assert weight_type[layers[2]] == onnx.TensorProto.INT4 and weight_type[layers[3]] == onnx.TensorProto.INT4
    assert weight_type[layers[1]] == onnx.TensorProto.INT8
    ours = mpqc.quantize(model, scheme).quant_eval.quality
    theirs = mpqc.evaluate(out).quality
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


def test_options_read_back_as_the_same_scheme(mixed, tmp_path):
    model, layers, scheme = mixed
    folder = mpqc.export_ort_options(model, scheme, output=tmp_path / "ort")
    result = mpqc.quantize(folder / "model.onnx", str(folder / "ort_options.json"), evaluate=False)
    expected = mpqc.quantize(model, scheme, evaluate=False).scheme
    assert result.scheme.labels() == expected.labels()


def test_a_hand_written_ort_config_reads_as_a_scheme(default_model):
    work = Workload.build(default_model)
    analysis = work.prepared.analysis
    first, last = analysis.layers[0], analysis.layers[-1]
    config = {
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "per_channel": True,
        "nodes_to_exclude": [last.name],
        "extra_options": {"TensorQuantOverrides": {first.weight: [{"quant_type": "QInt4", "axis": 0}]}},
    }
    scheme = scheme_from_ort_overrides(config, analysis, set(work.prepared.model.graph.initializers))
    assert scheme[first.name].label == "w4a8" and scheme[last.name].is_float
    assert {p.label for n, p in scheme.layers.items() if n not in (first.name, last.name)} == {"w8a8"}


@pytest.mark.parametrize(
    "overrides,excluded,match",
    [
        ({"nope": [{"quant_type": "QInt8"}]}, [], "names tensor 'nope', which is not in the model"),
        ({}, ["nope"], "nodes_to_exclude names 'nope'"),
        ("weight16", [], "has no mpqc precision"),
    ],
)
def test_bad_ort_options_are_refused_by_name(default_model, overrides, excluded, match):
    work = Workload.build(default_model)
    analysis = work.prepared.analysis
    if overrides == "weight16":
        overrides = {analysis.layers[0].weight: [{"quant_type": "QInt16"}]}
    config = {"nodes_to_exclude": excluded, "extra_options": {"TensorQuantOverrides": overrides}}
    with pytest.raises(SchemeError, match=match):
        scheme_from_ort_overrides(config, analysis, set(work.prepared.model.graph.initializers))


@pytest.mark.parametrize("label,match", [("w8af", "weight-only"), ("w2a8", "2-bit")])
def test_schemes_ort_cannot_express_are_refused(default_model, label, match):
    work = Workload.build(default_model)
    scheme = mpqc.Scheme.parse(label, work.prepared.analysis.layer_names)
    with pytest.raises(SchemeError, match=match):
        to_ort_overrides(work.prepared, scheme, work.calibration, work.recipe)


def test_forms_have_no_quantize_static_override(tmp_path):
    import builders as b

    x = b.rng(0).randn(32, 64).astype(np.float32)
    with pytest.raises(SchemeError, match="w8a8d: ONNX Runtime's quantize_static has no such form"):
        mpqc.export_ort_options(b.linear_stack(), "w8a8d", {"x": x}, output=tmp_path / "o")
    assert not (tmp_path / "o").exists()
