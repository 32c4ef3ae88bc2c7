"""The API on the shipped default model: quality as promised, honest low-bit results,
determinism, and the Python types toolchains use."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

import mpqc
from mpqc.recipe import Recipe
from mpqc.runtime import Runner, make_session
from mpqc.signature import input_specs
from mpqc.workload import Workload


@pytest.fixture(scope="module")
def w8a8(prepared_default):
    return mpqc.quantize(prepared_default, "w8a8")


def test_w8a8_within_half_a_point_of_float(w8a8):
    assert w8a8.float_eval.measure == "top1" and w8a8.float_eval.split == "test"
    assert w8a8.float_eval.top1 > 0.95
    assert w8a8.quant_eval.top1 >= w8a8.float_eval.top1 - 0.005
    assert w8a8.quant_eval.cosine > 0.99


def test_w8a8_fuses_into_integer_kernels(w8a8, tmp_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(w8a8.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in ir.load(tmp_path / "opt.onnx").graph]
    assert ops.count("QLinearConv") == 5 and "QGemm" in ops
    assert "Conv" not in ops and "FusedConv" not in ops


@pytest.mark.parametrize("scheme", ["w4a8", "w2a8", "w4a4"])
def test_low_bit_schemes_run_and_report_honestly(prepared_default, scheme):
    result = mpqc.quantize(prepared_default, scheme)
    assert result.quant_eval.samples == 450
    bits = int(scheme[1])
    weights = sum(int(np.prod(layer.weight_shape)) for layer in prepared_default.analysis.layers)
    biases = sum(layer.params for layer in prepared_default.analysis.layers) - weights
    assert result.weight_bytes == pytest.approx(weights * bits / 8, rel=0.01)
    assert result.float_weight_bytes == (weights + biases) * 4
    # the reported top-1 is what ONNX Runtime measures on the written model
    work = Workload.build(prepared_default)
    outputs = Runner(make_session(result.model), input_specs(prepared_default.model)).run(work.splits.test)
    assert np.mean(outputs[0].argmax(1) == work.splits.test.labels) == result.quant_eval.top1


def test_same_inputs_same_bytes(prepared_default):
    recipe = Recipe(activation_method="mse")
    a = mpqc.quantize(prepared_default, "w4a8", evaluate=False, recipe=recipe)
    b = mpqc.quantize(prepared_default, "w4a8", evaluate=False, recipe=recipe)
    assert a.model.SerializeToString() == b.model.SerializeToString()


def test_mixed_scheme_from_mapping(prepared_default, tmp_path):
    names = prepared_default.analysis.layer_names
    scheme = {"default": "w8a8", "layers": {names[2]: "w2a8", names[3]: {"w_bits": 4, "a_bits": 4}, names[-1]: "float"}}
    result = mpqc.quantize(prepared_default, scheme, output=tmp_path / "mixed.onnx")
    assert result.output.exists()
    assert result.scheme[names[-1]].is_float
    assert result.model.opset_import[0].version == 25  # int2 needs opset 25
    assert 0.0 <= result.quant_eval.top1 <= 1.0


def test_one_workload_serves_many_schemes(prepared_default):
    work = Workload.build(prepared_default, recipe=Recipe(activation_method="percentile"))
    outs = [mpqc.quantize(scheme=s, workload=work, evaluate=False) for s in ("w8a8", "w4a4")]
    assert all(o.calibration_seconds == work.calibration.seconds for o in outs)


def test_evaluate_label_free_against_reference(default_model, w8a8, tmp_path):
    path = tmp_path / "q.onnx"
    path.write_bytes(w8a8.model.SerializeToString())
    ev = mpqc.evaluate(path, reference=default_model)
    assert ev.agreement > 0.97 and ev.sqnr_db > 15 and np.isfinite(ev.cosine)
    assert ev.split == "test" and ev.samples == 450
    everything = mpqc.evaluate(path, reference=default_model, split="all")
    assert everything.samples == 1797


def test_import_mpqc_is_light():
    import subprocess
    import sys

    code = "import sys, mpqc; mpqc.Scheme; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_errors_are_subclasses_a_caller_can_catch(tmp_path):
    with pytest.raises(mpqc.ModelError):
        mpqc.analyze(tmp_path / "missing.onnx")
    with pytest.raises(mpqc.MpqcError):
        mpqc.quantize(scheme="w3a3")


def test_every_exported_function_stays_callable_after_the_api_is_loaded():
    """A submodule named like an API function (mpqc/profile.py once) replaces it on import."""
    import importlib

    importlib.import_module("mpqc.api")
    for name in ("analyze", "prepare", "quantize", "evaluate", "profile", "qat", "compile", "export_ort_options"):
        assert callable(getattr(mpqc, name)), name
