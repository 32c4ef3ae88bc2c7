"""A Hugging Face BERT encoder exported to ONNX here, with random weights (nothing is
downloaded): the transformer graph the real-model kit lacks, for tests and benchmarks.

`export_bert` runs torch's dynamo exporter (opset 18, dynamic batch and sequence, inputs
`input_ids` and `attention_mask`) and writes token data with padded sequences next to it.
Needs the `transformers` and `onnxscript` extras."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BertShape", "MINILM", "TINY", "export_bert"]


@dataclass(frozen=True)
class BertShape:
    """Encoder size and the token data written with it."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int = 1000
    seq: int = 16
    calib: int = 48
    test: int = 16


#: a 6-layer, 384-wide encoder: the size of all-MiniLM-L6, the sentence embedder ORT's
#: dynamic and MatMulNBits recipes are usually shown on
MINILM = BertShape(layers=6, hidden=384, heads=12, intermediate=1536, seq=32, calib=64, test=32)
#: 2 layers, 128 wide: fast enough for the test suite
TINY = BertShape(layers=2, hidden=128, heads=2, intermediate=256)


def export_bert(folder: Path, shape: BertShape = TINY, seed: int = 0) -> tuple[Path, Path, Path]:
    """(model.onnx, calib.npz, test.npz) in `folder`; reused when already there."""
    folder.mkdir(parents=True, exist_ok=True)
    path, calib, test = folder / "bert.onnx", folder / "calib.npz", folder / "test.npz"
    if not path.exists():
        _export(path, shape, seed)
    rng = np.random.default_rng(seed)
    for file, count in ((calib, shape.calib), (test, shape.test)):
        lengths = rng.integers(max(2, shape.seq // 4), shape.seq + 1, count)
        ids = rng.integers(0, shape.vocab, (count, shape.seq)).astype(np.int64)
        mask = (np.arange(shape.seq)[None, :] < lengths[:, None]).astype(np.int64)
        if not file.exists():
            np.savez(file, input_ids=ids, attention_mask=mask)
    return path, calib, test


def _export(path: Path, shape: BertShape, seed: int) -> None:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=max(64, 2 * shape.seq),
    )
    model = transformers.BertModel(config).eval()
    ids = torch.randint(0, shape.vocab, (2, shape.seq))
    mask = torch.ones(2, shape.seq, dtype=torch.int64)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=max(64, 2 * shape.seq))
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
        opset_version=18,
        dynamo=True,
        external_data=False,
    )
