"""The API on the shipped default model: accuracy as promised, honest low-bit results,
determinism, and the Python types toolchains use."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

import mpqc
from mpqc.runtime import make_session


@pytest.fixture(scope="module")
def w8a8(prepared_default):
    return mpqc.quantize(prepared_default, "w8a8")


def test_w8a8_within_half_a_point_of_float(w8a8):
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
    assert result.weight_bytes == pytest.approx(result.float_weight_bytes * bits / 32, rel=0.01)
    # the reported top-1 is what ONNX Runtime measures on the written model
    session = make_session(result.model)
    from mpqc.data import load_data
    from mpqc.evaluate import evaluate_session
    from mpqc.runtime import input_specs

    data = load_data(None, input_specs(prepared_default.model), "test")
    assert evaluate_session(session, data).top1 == result.quant_eval.top1


def test_same_inputs_same_bytes(prepared_default):
    a = mpqc.quantize(prepared_default, "w4a8", evaluate=False, calib_method="mse")
    b = mpqc.quantize(prepared_default, "w4a8", evaluate=False, calib_method="mse")
    assert a.model.SerializeToString() == b.model.SerializeToString()


def test_mixed_scheme_from_mapping(prepared_default, tmp_path):
    names = prepared_default.analysis.layer_names
    scheme = {"default": "w8a8", "layers": {names[2]: "w2a8", names[3]: {"w_bits": 4, "a_bits": 4}, names[-1]: "float"}}
    result = mpqc.quantize(prepared_default, scheme, output=tmp_path / "mixed.onnx")
    assert result.output.exists()
    assert result.scheme[names[-1]].is_float
    assert result.model.opset_import[0].version == 25  # int2 needs opset 25
    assert 0.0 <= result.quant_eval.top1 <= 1.0


def test_calibration_is_shared_across_schemes(prepared_default):
    calibration = mpqc.calibrate_model(prepared_default, method="percentile")
    outs = [
        mpqc.quantize(prepared_default, s, calibration=calibration, calib_method="percentile", evaluate=False)
        for s in ("w8a8", "w4a4")
    ]
    assert all(o.calibration_seconds == calibration.seconds for o in outs)


def test_evaluate_label_free_against_reference(default_model, w8a8, tmp_path):
    path = tmp_path / "q.onnx"
    path.write_bytes(w8a8.model.SerializeToString())
    ev = mpqc.evaluate(path, reference=default_model)
    assert ev.agreement > 0.97 and ev.sqnr_db > 15 and np.isfinite(ev.cosine)
