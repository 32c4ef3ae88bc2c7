"""mpqc: a mixed-precision quantization compiler for ONNX models."""

from mpqc.analysis import Analysis, Layer
from mpqc.api import Prepared, QuantizeResult, analyze, calibrate_model, evaluate, prepare, quantize
from mpqc.compile import CompileOptions, CompileResult
from mpqc.compile import compile_model as compile  # noqa: A001 (the main job is called compile)
from mpqc.errors import MpqcError
from mpqc.evaluate import Evaluation
from mpqc.profile import ProfileReport, profile
from mpqc.scheme import LayerPrecision, Scheme

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "CompileOptions",
    "CompileResult",
    "compile",
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
