"""The backend validator: mpqc's output for each backend passes its rules, other forms are
named violation by violation, and OpenVINO compiles and runs every model emitted for it with
the fidelity ONNX Runtime gets from the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import builders as b
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import mpqc
from mpqc.backend import get_backend
from mpqc.backend_check import check_model
from mpqc.precision import Precision
from mpqc.quality import mean_cosine
from mpqc.runtime import make_session
from mpqc.workload import Workload


def _emit(model, data, backend: str, label: str) -> onnx.ModelProto:
    work = Workload.build(model, data, backend=backend)
    scheme, _ = work.uniform(Precision.parse(label)).fitted_to(work.prepared.analysis)
    work.check_backend(scheme)
    return work.emit(scheme, check=True).proto()


def _rules(found) -> set[str]:
    return {v.rule for v in found}


def _quantizers(model: onnx.ModelProto, op: str):
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == op:
            yield node, [inits.get(name) for name in node.input]


@pytest.fixture(scope="module")
def linear():
    return b.linear_stack(), {"x": b.rng(3).randn(96, 64).astype(np.float32)}


def test_tensorrt_form_is_symmetric_int8_without_int32_bias(default_model):
    model = _emit(default_model, None, "tensorrt", "w8a8")
    assert check_model(model, get_backend("tensorrt")) == []
    quantizers = list(_quantizers(model, "QuantizeLinear"))
    assert quantizers and all(arrays[2].dtype == np.int8 and not arrays[2].any() for _, arrays in quantizers)
    weights = [arrays for _, arrays in _quantizers(model, "DequantizeLinear") if arrays[0] is not None]
    assert weights and all(a[0].dtype == np.int8 and a[0].min() >= -127 for a in weights)
    # what ORT's CPU EP is given (uint8 activations, int32 bias) is named rule by rule
    ort_form = _emit(default_model, None, "ort", "w8a8")
    assert {"activation-type", "bias"} <= _rules(check_model(ort_form, get_backend("tensorrt")))


def test_tensorrt_int4_weights_have_zero_points_of_zero(linear):
    model = _emit(*linear, "tensorrt", "w4nb")
    assert check_model(model, get_backend("tensorrt")) == []
    blocked = [
        a for n, a in _quantizers(model, "DequantizeLinear") if any(at.name == "block_size" for at in n.attribute)
    ]
    assert blocked and all(a[0].dtype.name == "int4" and not a[2].astype(np.int8).any() for a in blocked)
    assert all(-7 <= int(a[0].astype(np.int8).min()) for a in blocked)
    ort_form = _emit(*linear, "ort", "w4nb")
    assert "zero-point" in _rules(check_model(ort_form, get_backend("tensorrt")))


def test_qnn_form_has_per_tensor_matmul_weights_and_uint16_activations(linear):
    model = _emit(*linear, "qnn", "w8a16")
    assert check_model(model, get_backend("qnn")) == []
    acts = [a for _, a in _quantizers(model, "QuantizeLinear")]
    assert acts and all(a[2].dtype == np.uint16 for a in acts)
    weights = {n.name: a for n, a in _quantizers(model, "DequantizeLinear") if a[0] is not None and a[0].ndim == 2}
    matmul = [a for name, a in weights.items() if name.startswith("fc2")]
    gemm = [a for name, a in weights.items() if name.startswith("fc1")]
    assert matmul[0][1].size == 1 and gemm[0][1].size > 1  # MatMul per tensor, Gemm per channel
    found = check_model(_emit(*linear, "ort", "w8a8"), get_backend("qnn"))
    assert [(v.rule, v.node.startswith("fc2")) for v in found] == [("per-channel", True)]


def test_weight_only_layers_are_named_where_a_backend_runs_none(default_model):
    model = _emit(default_model, None, "ort", "w8af")
    found = check_model(model, get_backend("tensorrt"))
    assert "weight-only" in _rules(found)
    assert any("int8 weights with float activations; tensorrt runs no such layer" in str(v) for v in found)
    assert check_model(model, get_backend("openvino")) == []


def test_dynamic_and_custom_ops_are_named(linear):
    model = _emit(*linear, "ort", "w8a8d")
    assert "dynamic" in _rules(check_model(model, get_backend("qnn")))
    custom = b.model(
        [onnx.helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft", name="gelu")],
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    custom.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    found = check_model(custom, get_backend("tensorrt"))
    assert [str(v) for v in found] == ["gelu: com.microsoft.Gelu is not a standard ONNX op"]
    assert check_model(custom, get_backend("ort")) == []


@pytest.mark.parametrize("label", ["w8a8", "w4a8", "w8af", "w4af", "w8a8d", "w4nb"])
def test_openvino_compiles_and_runs_every_model_emitted_for_it(label, default_model, linear):
    """Checked for real: OpenVINO compiles the file and its outputs match ONNX Runtime's."""
    ov = pytest.importorskip("openvino") if not os.environ.get("MPQC_REQUIRE_EXTRAS") else __import__("openvino")
    model_data = linear if label in ("w8a8d", "w4nb") else (default_model, None)
    work = Workload.build(*model_data, backend="openvino")
    scheme, _ = work.uniform(Precision.parse(label)).fitted_to(work.prepared.analysis)
    payload = work.emit(scheme, check=True).payload()  # the rules, and OpenVINO's compile
    dataset = work.splits.test
    name = work.specs[0].name
    feed = dataset.inputs[name][:16]
    ort_out = make_session(payload).run(None, {name: feed})[0]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(payload, b""), "CPU")
    ov_out = np.concatenate([compiled({name: feed[i : i + 1]})[0] for i in range(len(feed))])
    float_out = make_session(work.prepared.proto).run(None, {name: feed})[0]
    assert mean_cosine([ov_out], [ort_out]) > 0.995
    assert abs(mean_cosine([ov_out], [float_out]) - mean_cosine([ort_out], [float_out])) < 0.01


def test_qat_keeps_the_backend_form(default_model):
    config = mpqc.QatConfig(epochs=1, progress=False)
    result = mpqc.qat(default_model, "w8a8", config=config, backend="tensorrt")
    assert check_model(result.model, get_backend("tensorrt")) == []
    assert result.qat_eval.quality > 0.9


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpqc", *args], capture_output=True, text=True, timeout=300)


def test_validate_cli_lists_violations_and_exits_1(default_model, tmp_path):
    out = tmp_path / "ort.onnx"
    assert _cli("quantize", "--scheme", "w8a8", "-o", str(out)).returncode == 0
    bad = _cli("validate", str(out), "--backend", "tensorrt", "--json")
    assert bad.returncode == 1
    payload = json.loads(bad.stdout)
    assert payload["backend"] == "tensorrt" and {v["rule"] for v in payload["violations"]} >= {"activation-type"}
    good = _cli("validate", str(out), "--backend", "openvino")
    assert good.returncode == 0 and "no violation of the openvino rules" in good.stdout
    missing = _cli("validate", str(tmp_path / "none.onnx"), "--backend", "qnn")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr
