"""Real exports the kit lacks: a Hugging Face BERT encoder with an attention-mask input (exported
here from `transformers` with random weights; nothing is downloaded) and silero-vad (a
recurrent state input without the batch on axis 0, a scalar sample-rate input, and all its
convolutions inside If branches), taken from its pip wheel. Both packages are test extras."""

from __future__ import annotations

import importlib.resources

import numpy as np
import onnxruntime as ort
import pytest

import mpqc

pytestmark = pytest.mark.slow


def _loads_and_runs(path, feed: dict[str, np.ndarray]) -> None:
    outputs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)
    assert all(np.isfinite(o).all() for o in outputs)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A 2-layer BERT exported by torch's dynamo exporter (opset 18, dynamic batch and
    sequence), and token data with padded sequences."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers", reason="the transformers test extra is not installed")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs the onnxscript test extra")
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=64,
    )
    model = transformers.BertModel(config).eval()
    ids = torch.randint(0, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=64)
    path = root / "bert.onnx"
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
        opset_version=18,
        dynamo=True,
    )
    rng = np.random.default_rng(0)
    files = {}
    for split, count in (("data", 48), ("test", 16)):
        lengths = rng.integers(4, 17, count)
        data = {
            "input_ids": rng.integers(0, 1000, (count, 16)).astype(np.int64),
            "attention_mask": (np.arange(16)[None, :] < lengths[:, None]).astype(np.int64),
        }
        files[split] = root / f"{split}.npz"
        np.savez(files[split], **data)
    return path, files


def test_bert_encoder_quantizes_and_keeps_its_output(bert, tmp_path):
    path, files = bert
    result = mpqc.quantize(path, "w8a8", files["data"], test_data=files["test"], output=tmp_path / "w8a8.onnx")
    assert len(result.analysis.layers) >= 12  # 6 projections per layer, 2 layers (+ the pooler)
    assert result.quant_eval.measure == "cosine" and result.quant_eval.quality >= 0.98, result.quant_eval
    feed = {k: v[:2] for k, v in np.load(files["test"]).items()}
    _loads_and_runs(tmp_path / "w8a8.onnx", feed)


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_bert_histogram_calibration_takes_the_float_min_mask(bert, method, tmp_path):
    """The additive mask holds float32-min values: histograms once crashed on them."""
    path, files = bert
    recipe = mpqc.Recipe(activation_method=method)
    result = mpqc.quantize(path, "w8a8", files["data"], test_data=files["test"], recipe=recipe)
    assert result.quant_eval.quality >= 0.95, result.quant_eval


def test_bert_trains_at_w4a8_without_labels(bert):
    path, files = bert
    result = mpqc.qat(path, "w4a8", files["data"], test_data=files["test"], config=mpqc.QatConfig(epochs=1))
    assert result.loss == "distill"
    assert result.qat_eval.quality >= result.ptq_eval.quality or result.kept_ptq


@pytest.fixture(scope="module")
def silero(tmp_path_factory):
    pytest.importorskip("silero_vad", reason="the silero-vad test extra is not installed")
    path = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
    rng = np.random.default_rng(0)
    count, t = 60, np.arange(512) / 16000
    voiced = rng.random(count) > 0.4
    tones = rng.uniform(100, 800, count)
    audio = 0.3 * np.sin(2 * np.pi * tones[:, None] * t) * voiced[:, None] + 0.05 * rng.standard_normal((count, 512))
    data = tmp_path_factory.mktemp("silero") / "audio.npz"
    # state: (2, batch, 128), the batch on axis 1; sr: one scalar for every sample
    np.savez(
        data,
        input=audio.astype(np.float32),
        state=np.zeros((2, count, 128), np.float32),
        sr=np.array(16000, np.int64),
    )
    return str(path), data


@pytest.mark.parametrize("scheme,tolerance", [("w8a8", 0.01), ("w4a8", 0.05)])
def test_silero_vad_quantizes_the_layers_inside_its_if_branches(silero, scheme, tolerance, tmp_path):
    """No speech recording ships in any installed package and silero hears none in tones or
    synthetic vowels (probabilities stay near 0), so this judges the graph handling and the
    speech probability's absolute error, not detection quality."""
    path, data = silero
    result = mpqc.quantize(path, scheme, data, output=tmp_path / "vad.onnx")
    assert len(result.analysis.layers) == 12  # 6 convolutions in each branch of the sample-rate If
    test = np.load(data)
    probability = {}
    for name, model in (("float", path), ("quantized", tmp_path / "vad.onnx")):
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        probability[name] = np.array(
            [
                session.run(None, {"input": x[None], "state": np.zeros((2, 1, 128), np.float32), "sr": test["sr"]})[0]
                for x in test["input"][-12:]
            ]
        )
    assert np.isfinite(probability["quantized"]).all()
    assert np.abs(probability["quantized"] - probability["float"]).max() <= tolerance
