"""mpqc: a mixed-precision quantization compiler for ONNX models.

The public API is loaded lazily: `import mpqc` is cheap (no torch, no ONNX Runtime) and each
name is imported on first use. See `mpqc.api` for the functions and README.md for examples.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mpqc.errors import (
    BackendError,
    BudgetError,
    DataError,
    ModelError,
    MpqcError,
    OptionError,
    OutputError,
    RunFolderError,
    SchemeError,
    TargetError,
    UserCodeError,
)
from mpqc.version import __version__

#: public name -> module that defines it
_LAZY = {
    "Analysis": "mpqc.analysis",
    "Layer": "mpqc.analysis",
    "Precision": "mpqc.precision",
    "Scheme": "mpqc.scheme",
    "Budget": "mpqc.budget",
    "Prepared": "mpqc.frontend",
    "Workload": "mpqc.workload",
    "Evaluation": "mpqc.quality",
    "QualityMeasure": "mpqc.quality",
    "CompileOptions": "mpqc.compiler",
    "CompileResult": "mpqc.compiler",
    "QuantizeResult": "mpqc.api",
    "ProfileReport": "mpqc.profiling",
    "QatConfig": "mpqc.training.config",
    "Recipe": "mpqc.recipe",
    "analyze": "mpqc.api",
    "prepare": "mpqc.api",
    "quantize": "mpqc.api",
    "evaluate": "mpqc.api",
    "profile": "mpqc.api",
    "qat": "mpqc.api",
    "compile": "mpqc.api",
    "export_ort_options": "mpqc.api",
    "validate": "mpqc.api",
    "Backend": "mpqc.backend",
    "Violation": "mpqc.backend_check",
}

__all__ = [
    "__version__",
    "MpqcError",
    "BackendError",
    "BudgetError",
    "DataError",
    "ModelError",
    "OptionError",
    "OutputError",
    "RunFolderError",
    "SchemeError",
    "TargetError",
    "UserCodeError",
    "Analysis",
    "Layer",
    "Precision",
    "Scheme",
    "Budget",
    "Prepared",
    "Workload",
    "Evaluation",
    "QualityMeasure",
    "CompileOptions",
    "CompileResult",
    "QuantizeResult",
    "ProfileReport",
    "QatConfig",
    "Recipe",
    "analyze",
    "prepare",
    "quantize",
    "evaluate",
    "profile",
    "qat",
    "compile",
    "export_ort_options",
    "validate",
    "Backend",
    "Violation",
]


assert set(_LAZY) <= set(__all__)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mpqc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from mpqc.analysis import Analysis, Layer
    from mpqc.api import QuantizeResult, analyze, compile, evaluate, prepare, profile, qat, quantize, validate
    from mpqc.backend import Backend
    from mpqc.backend_check import Violation
    from mpqc.budget import Budget
    from mpqc.compiler import CompileOptions, CompileResult
    from mpqc.frontend import Prepared
    from mpqc.precision import Precision
    from mpqc.profiling import ProfileReport
    from mpqc.quality import Evaluation, QualityMeasure
    from mpqc.recipe import Recipe
    from mpqc.scheme import Scheme
    from mpqc.training.config import QatConfig
    from mpqc.workload import Workload
