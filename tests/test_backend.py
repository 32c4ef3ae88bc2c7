"""Backend profiles: what each backend lets the search choose, and how it makes mpqc emit."""

from __future__ import annotations

import pytest
from mpqc.targets import get_target
from mpqc.targets.for_backend import BackendTarget

import mpqc
from mpqc.backend import BACKENDS, get_backend
from mpqc.errors import BackendError, OptionError, SchemeError
from mpqc.precision import Precision


def _layer(prepared, op):
    return next(layer for layer in prepared.analysis.layers if layer.op_type == op)


def test_unknown_backend_is_refused_by_name():
    with pytest.raises(OptionError, match="unknown backend 'tpu'; use one of ort, tensorrt, qnn, openvino"):
        get_backend("tpu")


@pytest.mark.parametrize(
    ("backend", "label", "op", "reason"),
    [
        ("tensorrt", "w8a8d", "Gemm", "not w8a8d"),
        ("tensorrt", "w8af", "Conv", "not w8af"),
        ("tensorrt", "w4a8", "Conv", "not w4a8"),
        ("tensorrt", "w4nb", "Conv", "MatMul/Gemm layers"),
        ("qnn", "w4nb", "Gemm", "not w4nb"),
        ("qnn", "w8a8d", "Gemm", "not w8a8d"),
        ("openvino", "w2a8", "Conv", "not w2a8"),
    ],
)
def test_each_backend_refuses_what_it_cannot_run(prepared_default, backend, label, op, reason):
    refusal = get_backend(backend).refusal(_layer(prepared_default, op), Precision.parse(label))
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize(
    ("backend", "label", "op"),
    [
        ("tensorrt", "w8a8", "Conv"),
        ("tensorrt", "w4nb", "Gemm"),
        ("qnn", "w8a16", "Conv"),
        ("openvino", "w8a8d", "Gemm"),
        ("ort", "w2a4", "Conv"),
        ("qnn", "float", "Conv"),
    ],
)
def test_each_backend_takes_what_it_runs(prepared_default, backend, label, op):
    assert get_backend(backend).allows(_layer(prepared_default, op), Precision.parse(label))


def test_a_target_narrowed_to_a_backend_searches_only_what_both_run(prepared_default):
    target = BackendTarget(get_target("ort-cpu"), get_backend("tensorrt"))
    assert [p.label for p in target.precisions()] == ["w8a8", "w4nb", "float"]
    gemm = _layer(prepared_default, "Gemm")
    assert [p.label for p in target.search_space(gemm)] == ["w8a8", "w4nb", "float"]
    with pytest.raises(SchemeError, match="backend tensorrt does not run w8a8d; with target ort-cpu it runs w8a8"):
        target.parse_space("w8a8,w8a8d")
    assert target.recipe_defaults()["signed_activations"] is True
    assert target.info()["backend"]["name"] == "tensorrt"


def test_a_target_with_nothing_the_backend_takes_is_refused(tmp_path):
    chip = tmp_path / "w4chip.toml"
    chip.write_text(
        'name = "w4chip"\nkind = "mcu"\ndescription = "4-bit only"\n[compute]\nfrequency_hz = 1e8\n'
        "layer_overhead_cycles = 0\n[cycles_per_mac]\nw4a8 = 0.5\nfloat = 4.0\n"
        "[memory]\nflash_bytes = 1000000000\nsram_bytes = 1000000000\n"
    )
    with pytest.raises(BackendError, match="target w4chip runs nothing the tensorrt backend accepts"):
        BackendTarget(get_target(str(chip)), get_backend("tensorrt"))


def test_backend_recipe_settings():
    assert BACKENDS["ort"].recipe_settings() == {}
    trt = BACKENDS["tensorrt"].recipe_settings()
    assert trt == {"signed_activations": True, "zero_points_zero": True, "quantize_bias": False}
    assert BACKENDS["qnn"].recipe_settings() == {"per_tensor_weight_ops": ("MatMul",)}


def test_a_scheme_the_backend_cannot_run_is_refused_before_any_work(tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(BackendError, match=r"layer /fc/Gemm \(Gemm\) at w8a8d: tensorrt runs"):
        mpqc.quantize(None, "w8a8d", output=out, backend="tensorrt")
    assert not out.exists()


def test_sixteen_bit_activations_parse_only_for_activations():
    assert Precision.parse("w8a16").a_bits == 16
    with pytest.raises(SchemeError, match="unknown precision 'w16a8'"):
        Precision.parse("w16a8")
    with pytest.raises(SchemeError, match=r"w_bits must be one of 2, 4, 8 or float"):
        Precision.from_json({"w_bits": 16})
