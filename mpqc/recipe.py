"""The PTQ recipe: how ranges and scales are computed, independent of the scheme."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mpqc.cpu import detect
from mpqc.errors import OptionError

__all__ = ["Recipe", "ACTIVATION_METHODS", "CALIBRATION_METHODS", "WEIGHT_METHODS", "WEIGHTS_KEY"]

#: range methods for one activation tensor
ACTIVATION_METHODS = ("minmax", "percentile", "mse")
#: what a user may ask for: one method for every tensor, or `auto` (chosen per tensor)
CALIBRATION_METHODS = ("auto", *ACTIVATION_METHODS)
#: `auto`: min-max at 8 bits; below, min-max or MSE by output fidelity (`mpqc.autocalib`)
WEIGHT_METHODS = ("auto", "minmax", "mse")
#: the fields a deployment backend sets (`mpqc.backend.Backend.recipe_settings`)
BACKEND_SETTINGS = ("signed_activations", "zero_points_zero", "quantize_bias", "per_tensor_weight_ops")
#: the tensor name under which `Recipe.chosen` keeps the weight method chosen per weight width
WEIGHTS_KEY = "*weights"


@dataclass(frozen=True)
class Recipe:
    """Activation range method, weight scale method, and the 8-bit weight range.

    `reduce_range` keeps 8-bit weights in [-64, 63], so that x86 AVX2 int8 kernels without
    VNNI cannot saturate their int16 pair sums; full range is right everywhere else. None
    (the default) decides by the CPU in hand (`mpqc.cpu`)."""

    activation_method: str = "auto"
    weight_method: str = "auto"
    percentile: float = 99.99
    reduce_range: bool | None = None
    #: what a backend needs (`mpqc.backend`): int8 activations with zero point 0 (TensorRT)
    signed_activations: bool = False
    #: every zero point 0, including the mirrored 4-bit weight grid (TensorRT)
    zero_points_zero: bool = False
    #: int32 bias behind a DequantizeLinear for int8 layers (ONNX Runtime fuses it; TensorRT has no int32 Q/DQ)
    quantize_bias: bool = True
    #: layer ops whose weights are quantized per tensor (QNN has no per-channel MatMul)
    per_tensor_weight_ops: tuple[str, ...] = ()
    #: (tensor, bits) -> method, filled by the `auto` choices; (WEIGHTS_KEY, bits) is the
    #: weight scale method chosen for that weight width
    chosen: Mapping[tuple[str, int], str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.activation_method not in CALIBRATION_METHODS:
            raise OptionError(
                f"unknown calibration method {self.activation_method!r}; use one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.weight_method not in WEIGHT_METHODS:
            raise OptionError(f"unknown weight method {self.weight_method!r}; use one of {', '.join(WEIGHT_METHODS)}")
        if not (isinstance(self.percentile, int | float) and math.isfinite(self.percentile)) or not (
            50.0 < self.percentile <= 100.0
        ):
            raise OptionError(f"percentile must be in (50, 100], got {self.percentile!r}")
        object.__setattr__(self, "per_tensor_weight_ops", tuple(self.per_tensor_weight_ops))
        object.__setattr__(self, "chosen", dict(self.chosen))  # a copy: never shared with the caller

    def method_for(self, tensor: str, bits: int) -> str:
        """The range method of one activation tensor at one bit width: `auto` looks up the
        choice, else the best method for that width over all tensors, else min-max."""
        if self.activation_method != "auto":
            return self.activation_method
        return self.chosen.get((tensor, bits)) or self.chosen.get(("*", bits)) or "minmax"

    def with_choices(self, chosen: Mapping[tuple[str, int], str]) -> Recipe:
        return replace(self, chosen=chosen)

    @property
    def weights_reduced(self) -> bool:
        """Whether 8-bit weights are held in [-64, 63]: as given, else as this CPU needs."""
        return detect().int8_saturates if self.reduce_range is None else self.reduce_range

    def weight_method_for(self, bits: int) -> str:
        """The weight scale method at one bit width: `auto` looks up the choice made by output
        fidelity (`mpqc.autocalib.choose_weight_method`), else min-max at 8 bits, MSE below."""
        if self.weight_method != "auto":
            return self.weight_method
        return self.chosen.get((WEIGHTS_KEY, bits)) or ("minmax" if bits == 8 else "mse")

    def _backend_json(self) -> dict[str, Any]:
        """The backend settings that differ from ONNX Runtime's (absent for it: cache keys stay)."""
        defaults = {f.name: f.default for f in fields(Recipe) if f.name in BACKEND_SETTINGS}
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name in BACKEND_SETTINGS
            if (value := getattr(self, name)) != defaults[name]
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "activation_method": self.activation_method,
            "weight_method": self.weight_method,
            "percentile": self.percentile,
            "reduce_range": self.weights_reduced,
            "reduce_range_from": "cpu" if self.reduce_range is None else "given",
            **self._backend_json(),
            "chosen": {f"{t}@{b}": m for (t, b), m in sorted(self.chosen.items())},
        }
