"""Quantization-aware training from ONNX: the QDQ graph of a scheme becomes a trainable
torch module with fake quantization at exactly its Quantize/Dequantize points.

Importing `mpqc.training` does not import torch; `mpqc.training.train` and `mpqc.training.graph` do."""

from mpqc.training.config import LOSSES, QatConfig

__all__ = ["LOSSES", "QatConfig"]
