"""The trainable graph is the QDQ graph: same outputs as ONNX Runtime before training,
write-back round trip, determinism with a seed."""

from __future__ import annotations

import builders as b
import numpy as np
import onnx_ir as ir
import pytest
import torch

import mpqc
from mpqc.emit import emit
from mpqc.recipe import Recipe
from mpqc.runtime import make_session
from mpqc.scheme import Scheme
from mpqc.training import QatConfig
from mpqc.training.graph import TrainableGraph
from mpqc.training.train import train_scheme
from mpqc.workload import Workload


def emit_qdq(prepared, scheme, calibration):
    return emit(prepared, scheme, calibration, Recipe())


def _weights(prepared):
    return {
        n: v.const_value.numpy()
        for n, v in prepared.model.graph.initializers.items()
        if v.const_value is not None and v.const_value.dtype == ir.DataType.FLOAT
    }


@pytest.mark.parametrize("scheme", ["w8a8", "w4a8", "w2a8", "w4a4", "float"])
def test_fake_quant_graph_matches_onnx_runtime(prepared_default, scheme):
    calibration = Workload.build(prepared_default).calibration
    bound = Scheme.parse(scheme, prepared_default.analysis.layer_names)
    qdq = emit_qdq(prepared_default, bound, calibration).model
    module = TrainableGraph(qdq, _weights(prepared_default)).eval()
    x = np.random.RandomState(0).rand(16, 1, 16, 16).astype(np.float32)
    expected = make_session(qdq, optimize=False).run(None, {"input": x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x))[0].numpy()
    _assert_same_up_to_rounding_flips(got, expected)


def _assert_same_up_to_rounding_flips(got: np.ndarray, expected: np.ndarray) -> None:
    """Torch and ONNX Runtime sum convolutions in different orders: a value landing on a
    rounding tie may go to the neighbouring integer in one of them, which moves a few
    outputs by about one quantization step. Everything else must agree to float precision."""
    scale = float(np.abs(expected).max())
    close = np.isclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    assert close.mean() >= 0.85, close.mean()
    assert np.abs(got - expected).max() <= 0.05 * scale
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


def test_transformer_and_real_model_traits_train():
    proto = b.token_model()
    prepared = mpqc.prepare(proto)
    data = b.token_data()
    calibration = Workload.build(prepared, data).calibration
    qdq = emit_qdq(prepared, Scheme.parse("w8a8", prepared.analysis.layer_names), calibration).model
    module = TrainableGraph(qdq, _weights(prepared)).eval()
    expected = make_session(qdq, optimize=False).run(None, data)[0]
    with torch.no_grad():
        got = module(torch.from_numpy(data["ids"]), torch.from_numpy(data["feat"]))[0].numpy()
    _assert_same_up_to_rounding_flips(got, expected)


def test_write_back_puts_trained_values_into_the_graph(prepared_default):
    work = Workload.build(prepared_default)
    bound = Scheme.parse("w4a8", prepared_default.analysis.layer_names)
    train = work.splits.train.take(128)
    before = emit_qdq(prepared_default, bound, work.calibration).model
    before_scales = {n: v.const_value.numpy().copy() for n, v in before.graph.initializers.items() if "scale" in n}
    outcome = train_scheme(
        prepared_default,
        bound,
        work.calibration,
        work.recipe,
        train,
        work.float_runner(),
        QatConfig(epochs=1),
        [o[:128] for o in work.reference("train")],
    )
    qdq = outcome.model
    after = {n: v.const_value.numpy() for n, v in qdq.graph.initializers.items() if "scale" in n}
    assert any(not np.array_equal(before_scales[n], after[n]) for n in before_scales)
    x = np.asarray(train.inputs["input"][:8])
    with torch.no_grad():
        trained = outcome.module(torch.from_numpy(x))[0].numpy()
    written = make_session(qdq, optimize=False).run(None, {"input": x})[0]
    _assert_same_up_to_rounding_flips(trained, written)
    assert len(outcome.losses) == 1 and written.shape == (8, 10)


def test_same_seed_same_bytes(prepared_default):
    work = Workload.build(prepared_default)
    bound = Scheme.parse("w2a8", prepared_default.analysis.layer_names)
    train = work.splits.train.take(128)
    runs = [
        train_scheme(
            prepared_default,
            bound,
            work.calibration,
            work.recipe,
            train,
            work.float_runner(),
            QatConfig(epochs=1, seed=7),
            [o[:128] for o in work.reference("train")],
        ).model
        for _ in range(2)
    ]
    assert (
        ir.serde.serialize_model(runs[0]).SerializeToString() == ir.serde.serialize_model(runs[1]).SerializeToString()
    )


def test_qat_trains_through_low_bit_containers_and_writes_their_bounds():
    """A 4-bit activation behind MaxPool is held in an 8-bit container (Clip + Q/DQ); after
    training, the Clip's bounds follow the trained scale and ONNX Runtime agrees with torch."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "passes"))
    from test_insert_qdq import _through

    proto = _through("MaxPool")
    x = np.random.RandomState(5).randn(64, 3, 8, 8).astype(np.float32)
    work = Workload.build(proto, {"x": x})
    bound = Scheme.parse("w4a4", work.prepared.analysis.layer_names)
    outcome = train_scheme(
        work.prepared,
        bound,
        work.calibration,
        work.recipe,
        work.splits.train,
        work.float_runner(),
        QatConfig(epochs=2, lr=1e-2, batch_size=8),
        work.reference("train"),
    )
    clips = [n for n in outcome.model.graph if n.op_type == "Clip" and n.metadata_props.get("mpqc.role") == "clip"]
    assert clips
    q = next(iter(clips[0].outputs[0].uses())).node
    scale = float(q.inputs[1].const_value.numpy())
    zero = int(q.inputs[2].const_value.numpy())
    assert float(clips[0].inputs[2].const_value.numpy()) == pytest.approx((15 - zero) * scale, rel=1e-6)
    sample = x[:8]
    with torch.no_grad():
        trained = outcome.module(torch.from_numpy(sample))[0].numpy()
    written = make_session(outcome.model).run(None, {"x": sample})[0]
    _assert_same_up_to_rounding_flips(trained, written)


def test_qat_runs_the_branch_the_condition_takes():
    """Layers inside If branches train; torch and ONNX Runtime agree after write-back."""
    import builders as b

    proto = b.with_if(inner_activation=True)
    x = b.rng(7).randn(64, 1, 4, 4).astype(np.float32)  # both branches taken, by the sign of a sum
    work = Workload.build(proto, {"x": x})
    bound = Scheme.parse("w8a8", work.prepared.analysis.layer_names)
    outcome = train_scheme(
        work.prepared,
        bound,
        work.calibration,
        work.recipe,
        work.splits.train,
        work.float_runner(),
        QatConfig(epochs=2, lr=1e-3, batch_size=1),
        work.reference("train"),
    )
    for sample in x[:6]:
        with torch.no_grad():
            trained = outcome.module(torch.from_numpy(sample[None]))[0].numpy()
        written = make_session(outcome.model).run(None, {"x": sample[None]})[0]
        np.testing.assert_allclose(trained, written, rtol=1e-3, atol=1e-3 * float(np.abs(written).max()))


@pytest.mark.parametrize("scheme", ["w8a8d", "w4nb"])
def test_dynamic_and_nbits_forms_train_as_onnx_runtime_computes_them(scheme):
    """DynamicQuantizeLinear -> fake quantization over each batch's own range; blocked weights
    -> one learnable scale per block; the rewritten Gemm (MatMul + Add) runs as well."""
    proto = b.linear_stack()
    prepared = mpqc.prepare(proto)
    x = b.rng(2).randn(64, 64).astype(np.float32)
    calibration = Workload.build(prepared, {"x": x}).calibration
    qdq = emit_qdq(prepared, Scheme.parse(scheme, prepared.analysis.layer_names), calibration).model
    module = TrainableGraph(qdq, _weights(prepared)).eval()
    expected = make_session(qdq, optimize=False).run(None, {"x": x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
    if scheme == "w4nb":
        block = module.quantizers[next(k for k in module.quantizers if "fc1" in k)]
        assert block.block == 32 and tuple(block.scale.shape) == (2, 128)
    module.train()
    loss = module(torch.from_numpy(x))[0].square().mean()
    loss.backward()
    assert all(q.scale.grad is not None for q in module.quantizers.values())
    module.write_back()
    make_session(qdq).run(None, {"x": x})  # still loads, fused
