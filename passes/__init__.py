"""mpqc's passes, each in its own module, built on onnx-ir's pass infrastructure."""

from mpqc.passes.analyze_layers import AnalysisResult, AnalyzeLayersPass
from mpqc.passes.check_model import CheckModelPass
from mpqc.passes.fold_batchnorm import FoldBatchNormPass
from mpqc.passes.fuse_attention import FuseAttentionPass
from mpqc.passes.fuse_gelu import FuseGeluPass
from mpqc.passes.shape_inference import InferShapesPass
from mpqc.passes.simplify import SimplifyPass
from mpqc.passes.upgrade_opset import UpgradeOpsetPass

__all__ = [
    "AnalysisResult",
    "AnalyzeLayersPass",
    "CheckModelPass",
    "FoldBatchNormPass",
    "FuseAttentionPass",
    "FuseGeluPass",
    "InferShapesPass",
    "SimplifyPass",
    "UpgradeOpsetPass",
]
