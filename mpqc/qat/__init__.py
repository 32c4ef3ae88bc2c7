"""Quantization-aware training from ONNX: the QDQ graph of a scheme becomes a trainable
torch module with fake quantization at exactly its Quantize/Dequantize points."""

from mpqc.qat.fakequant import FakeQuant
from mpqc.qat.graph import TrainableGraph
from mpqc.qat.train import QatConfig, QatResult, qat

__all__ = ["FakeQuant", "QatConfig", "QatResult", "TrainableGraph", "qat"]
