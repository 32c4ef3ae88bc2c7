from __future__ import annotations

import numpy as np
import pytest
import torch

import mpqc
from mpqc.cli import main
from mpqc.errors import MpqcError
from mpqc.export import parse_shape


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 5),
    )


def test_export_then_quantize(tmp_path, capsys):
    path = tmp_path / "tiny.onnx"
    assert main(["export", "test_export:tiny_net", "--input-shape", "1,3,8,8", "-o", str(path)]) == 0
    data = {"input": np.random.RandomState(0).randn(16, 3, 8, 8).astype(np.float32)}
    result = mpqc.quantize(path, "w8a8", data)
    assert [layer.op_type for layer in result.analysis.layers] == ["Conv", "Gemm"]
    assert result.quant_eval.cosine > 0.98


def test_bad_shapes_and_targets():
    with pytest.raises(MpqcError):
        parse_shape("1,a,3")
    with pytest.raises(MpqcError):
        parse_shape("0,3")
    assert main(["export", "nomodule", "--input-shape", "1,3", "-o", "x.onnx"]) == 2
    assert main(["export", "no_such_module:f", "--input-shape", "1,3", "-o", "x.onnx"]) == 2
