"""Acceptance: the numpy fake-quantization reference agrees with the QDQ model that
ONNX Runtime runs, for w8a8, w4a8 and w2a8 layers of random shapes."""

from __future__ import annotations

import builders as b
import numpy as np
import onnx_ir as ir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h

import mpqc
from mpqc.quant import activation_qparams, fake_quantize, int_range, quantize, weight_qparams
from mpqc.recipe import Recipe
from mpqc.runtime import make_session

MINMAX = Recipe(activation_method="minmax")  # the numpy reference computes min-max ranges

_SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _gemm_model(k: int, n: int, seed: int, bias: bool) -> tuple:
    r = b.rng(seed)
    w = (r.randn(k, n) * r.uniform(0.1, 2.0, size=n)).astype(np.float32)
    bvec = r.randn(n).astype(np.float32)
    inputs = ["x", "w"] + (["bias"] if bias else [])
    op = "Gemm" if bias else "MatMul"
    node = h.make_node(op, inputs, ["y"], name="layer")
    inits = [b.init("w", w)] + ([b.init("bias", bvec)] if bias else [])
    m = b.model(
        [node],
        [h.make_tensor_value_info("x", T.FLOAT, ["n", k])],
        [h.make_tensor_value_info("y", T.FLOAT, ["n", n])],
        inits,
    )
    return m, w, (bvec if bias else None)


def _conv_model(cin: int, cout: int, ksize: int, seed: int) -> tuple:
    r = b.rng(seed)
    w = (r.randn(cout, cin, ksize, ksize) * 0.4).astype(np.float32)
    node = h.make_node("Conv", ["x", "w"], ["y"], name="layer")
    m = b.model(
        [node],
        [h.make_tensor_value_info("x", T.FLOAT, ["n", cin, 6, 6])],
        [h.make_tensor_value_info("y", T.FLOAT, ["n", cout, 7 - ksize, 7 - ksize])],
        [b.init("w", w)],
    )
    return m, w, None


def _conv_ref(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))  # n,c,oh,ow,kh,kw
    return np.einsum("ncijkl,ockl->noij", windows, w, optimize=True).astype(np.float32)


def _reference(x, w, bias, bits_w, bits_a, axis, conv: bool, reduce_range: bool = MINMAX.weights_reduced) -> np.ndarray:
    a_params = activation_qparams(min(float(x.min()), 0.0), max(float(x.max()), 0.0), bits_a, symmetric=False)
    method = "minmax" if bits_w == 8 else "mse"
    w_params = weight_qparams(w, bits_w, axis, True, method, reduce_range)
    xq, wq = fake_quantize(x, a_params), fake_quantize(w, w_params)
    y = _conv_ref(xq, wq) if conv else xq @ wq
    if bias is not None:
        if bits_w == 8 and bits_a == 8:  # int32 bias at scale s_x * s_w
            s = (np.float32(a_params.scale) * w_params.scale).astype(np.float32)
            bias = (np.rint(bias / s) * s).astype(np.float32)
        y = y + bias
    return y


def _run(m, scheme: str, x: np.ndarray, optimize: bool) -> np.ndarray:
    whole = {"x": x}  # validation and test given: every sample calibrates, as the reference does
    # the reference's weight scales: min-max at 8 bits, MSE below (auto's choice is tested apart)
    recipe = Recipe(activation_method="minmax", weight_method="minmax" if scheme.startswith("w8") else "mse")
    result = mpqc.quantize(m, scheme, whole, val_data=whole, test_data=whole, evaluate=False, recipe=recipe)
    return make_session(result.model, optimize=optimize).run(None, {"x": x})[0]


@_SETTINGS
@given(
    k=st.integers(2, 24),
    n=st.integers(1, 12),
    bias=st.booleans(),
    seed=st.integers(0, 10_000),
    scheme=st.sampled_from(["w8a8", "w4a8", "w2a8"]),
)
def test_gemm_qdq_matches_numpy_reference(k, n, bias, seed, scheme):
    m, w, bvec = _gemm_model(k, n, seed, bias)
    x = b.rng(seed + 1).randn(32, k).astype(np.float32)
    bits_w = int(scheme[1])
    axis = 1  # weight [K, N]: output channels on axis 1
    ref = _reference(x, w, bvec, bits_w, 8, axis, conv=False)
    out = _run(m, scheme, x, optimize=False)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max() + 1))


@_SETTINGS
@given(
    cin=st.integers(1, 6),
    cout=st.integers(1, 8),
    ksize=st.sampled_from([1, 3]),
    seed=st.integers(0, 10_000),
    scheme=st.sampled_from(["w8a8", "w4a8", "w2a8"]),
)
def test_conv_qdq_matches_numpy_reference(cin, cout, ksize, seed, scheme):
    m, w, _ = _conv_model(cin, cout, ksize, seed)
    x = b.rng(seed + 1).randn(8, cin, 6, 6).astype(np.float32)
    ref = _reference(x, w, None, int(scheme[1]), 8, 0, conv=True)
    for optimize in (False, True):  # reference kernels, then ONNX Runtime's fused int8 kernels
        out = _run(m, scheme, x, optimize)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max() + 1))


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from([2, 4, 8]), signed=st.booleans(), seed=st.integers(0, 10_000))
def test_quantize_saturates_to_the_integer_range(bits, signed, seed):
    x = b.rng(seed).randn(100).astype(np.float32) * 10
    params = activation_qparams(-1.0, 2.0, bits, symmetric=signed)
    q = quantize(x, params)
    qmin, qmax = int_range(bits, params.signed)
    assert q.min() >= qmin and q.max() <= qmax


def test_zero_is_exact_for_asymmetric_activations():
    for bits in (2, 4, 8):
        params = activation_qparams(-0.37, 5.1, bits, symmetric=False)
        assert fake_quantize(np.zeros(3, np.float32), params).tolist() == [0.0, 0.0, 0.0]


def test_reduce_range_keeps_8bit_weights_in_7_bits():
    w = b.rng(0).randn(16, 9).astype(np.float32)
    params = weight_qparams(w, 8, 0, True, "minmax", reduce_range=True)
    q = quantize(w, params)
    assert q.min() >= -64 and q.max() <= 63 and q.max() == 63


def test_mse_weights_beat_minmax_at_low_bits():
    w = b.rng(1).standard_t(3, size=(8, 64)).astype(np.float32)  # heavy tails
    errors = {}
    for method in ("minmax", "mse"):
        params = weight_qparams(w, 4, 0, True, method)
        errors[method] = float(np.square(w - fake_quantize(w, params)).sum())
    assert errors["mse"] < errors["minmax"]


def test_mse_search_is_remembered_per_weight_content():
    """The second search of the same weights is a lookup with the same result; callers may
    change what they got back without touching what is remembered; other content searches."""
    import mpqc.quant as quant

    w = b.rng(2).standard_t(3, size=(6, 32)).astype(np.float32)
    quant._MSE_SEARCHED.clear()
    first = weight_qparams(w, 4, 0, True, "mse")
    assert len(quant._MSE_SEARCHED) == 1
    first.scale[:] = 0  # a caller scribbling on its copy
    again = weight_qparams(w.copy(), 4, 0, True, "mse")
    assert len(quant._MSE_SEARCHED) == 1 and np.all(again.scale > 0)
    fresh = quant._weight_qparams(w, 4, 0, True, "mse", False, 64)
    assert np.array_equal(again.scale, fresh.scale) and np.array_equal(again.zero_point, fresh.zero_point)
    weight_qparams(w * 2, 4, 0, True, "mse")
    weight_qparams(w, 2, 0, True, "mse")
    assert len(quant._MSE_SEARCHED) == 3


def test_qdq_weights_are_stored_at_their_width():
    m, _, _ = _conv_model(3, 4, 3, 0)
    x = b.rng(1).randn(8, 3, 6, 6).astype(np.float32)
    expected = {"w8a8": ir.DataType.INT8, "w4a8": ir.DataType.INT4, "w2a8": ir.DataType.INT2}
    for scheme, dtype in expected.items():
        whole = {"x": x}
        model = ir.serde.deserialize_model(
            mpqc.quantize(m, scheme, whole, val_data=whole, test_data=whole, evaluate=False, recipe=MINMAX).model
        )
        weights = [v for v in model.graph.initializers.values() if v.name.endswith("_quantized") and "_w" in v.name]
        assert [v.const_value.dtype for v in weights] == [dtype]


def test_block_weights_match_onnx_runtime_matmulnbits_quantizer():
    """Same levels as ONNX Runtime's own 4-bit block quantizer (largest magnitude on the -8
    end), so mpqc's w4nb is exactly as faithful as `MatMulNBitsQuantizer` per layer."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    from mpqc.quant import block_expand, block_weight_qparams

    k, n, block = 96, 40, 32
    w = np.random.RandomState(7).randn(k, n).astype(np.float32)
    packed = np.zeros((n, k // block, block // 2), np.uint8)
    scales = np.zeros((n, k // block), np.float32)
    zeros = np.zeros((n, (k // block + 1) // 2), np.uint8)
    quantize_matmul_4bits(packed, w, scales, zeros, block, n, k, True)
    levels = np.stack([packed & 0xF, packed >> 4], -1).reshape(n, k).astype(np.int32) - 8
    theirs = (levels.reshape(n, k // block, block) * scales[:, :, None]).reshape(n, k).T
    params = block_weight_qparams(w, 4, block, True, "minmax")
    assert params.scale.shape == (k // block, n)
    s, z = block_expand(params.scale, block, k), block_expand(params.zero_point, block, k)
    ours = (np.clip(np.rint(w / s) + z, -8, 7) - z) * s
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
