"""Quantization-aware training from ONNX: the QDQ graph of a scheme becomes a trainable
torch module with fake quantization at exactly its Quantize/Dequantize points.

Importing `mpqc.qat` does not import torch; `mpqc.qat.train` and `mpqc.qat.graph` do."""

from mpqc.qat.config import LOSSES, QatConfig

__all__ = ["LOSSES", "QatConfig"]
