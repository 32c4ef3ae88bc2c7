"""mpqc: a mixed-precision quantization compiler for ONNX models."""

from mpqc.analysis import Analysis, Layer
from mpqc.api import Prepared, QuantizeResult, analyze, calibrate_model, evaluate, prepare, quantize
from mpqc.errors import MpqcError
from mpqc.evaluate import Evaluation
from mpqc.profile import ProfileReport, profile
from mpqc.scheme import LayerPrecision, Scheme

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "Evaluation",
    "Layer",
    "LayerPrecision",
    "MpqcError",
    "Prepared",
    "ProfileReport",
    "QuantizeResult",
    "Scheme",
    "analyze",
    "calibrate_model",
    "evaluate",
    "prepare",
    "profile",
    "quantize",
]
