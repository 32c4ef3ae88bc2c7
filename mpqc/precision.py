"""How one layer runs: the one precision type used by schemes, targets, cost tables and reports.

A precision is weight bits and activation bits (None = float) plus the *form* the runtime
executes it in:

- ``qdq``: QuantizeLinear/DequantizeLinear around the layer (static ranges from calibration).
  Labels ``w8a8``, ``w4a8``, ``w8af`` (weights only), ``wfa8`` (activations only), ``float``.
- ``dynamic``: int8 weights, activations quantized at run time from each batch's own range
  (ONNX Runtime's DynamicQuantizeLinear + MatMulInteger). Label ``w8a8d``.
- ``nbits``: block-wise weight-only quantization run by ONNX Runtime's MatMulNBits kernel
  (``com.microsoft``), blocks of ``block`` weights along the reduction axis. Labels ``w4nb``
  (block 32) or ``w4nb64``.

Labels are the stable text form: CLI shorthands, JSON keys of cost tables and reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from mpqc.errors import SchemeError

__all__ = ["VALID_BITS", "ACTIVATION_BITS", "FORMS", "Precision", "parse_bits", "FLOAT", "W8A8"]

VALID_BITS: tuple[int, ...] = (2, 4, 8)
#: activation widths: 16-bit activations with 8-bit weights are what Qualcomm's HTP runs best
#: after int8 (`w8a16`, ONNX Runtime's get_qnn_qdq_config with QUInt16 activations)
ACTIVATION_BITS: tuple[int, ...] = (*VALID_BITS, 16)
FORMS: tuple[str, ...] = ("qdq", "dynamic", "nbits")
_QDQ = re.compile(r"^w(2|4|8|f)a(2|4|8|16|f)$")
_DYNAMIC = re.compile(r"^w8a8d$")
_NBITS = re.compile(r"^w(2|4|8)nb(\d+)?$")
_FLAGS = ("per_channel", "w_symmetric", "a_symmetric")
_KEYS = ("w_bits", "a_bits", *_FLAGS, "form", "block")
LABEL_HELP = (
    "float, wXaY with X in 2, 4, 8, f and Y in 2, 4, 8, 16, f (e.g. w8a8, w4a8, w8af, w8a16), w8a8d (dynamic int8), "
    "w4nb (MatMulNBits)"
)


def parse_bits(value: Any, what: str = "bits", allowed: tuple[int, ...] = VALID_BITS) -> int | None:
    """2/4/8 (16 where `allowed` has it), '8', 'float', 'f' or null; anything else is an
    error listing the choices."""
    choices = _choices(allowed)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("float", "f", "fp32")):
        return None
    if isinstance(value, bool):
        raise SchemeError(f"{what} must be one of {choices}, got {value!r}")
    try:
        bits = int(value)
    except (TypeError, ValueError):
        raise SchemeError(f"{what} must be one of {choices}, got {value!r}") from None
    if bits not in allowed or str(value).strip() not in (str(bits), f"{bits}.0"):
        raise SchemeError(f"{what} must be one of {choices}, got {value!r}")
    return bits


def _choices(allowed: tuple[int, ...]) -> str:
    return ", ".join(str(b) for b in allowed) + " or float"


@dataclass(frozen=True)
class Precision:
    """One layer's precision.

    Weights are signed integers; `w_symmetric` fixes their zero point at 0 (ONNX Runtime's
    per-channel int8 kernels need it). Activations are unsigned with a zero point unless
    `a_symmetric`. `per_channel` quantizes weights per output channel (per block for nbits).
    """

    w_bits: int | None = 8
    a_bits: int | None = 8
    per_channel: bool = True
    w_symmetric: bool = True
    a_symmetric: bool = False
    form: str = "qdq"
    #: weights per block along the reduction axis (nbits only; 0 elsewhere)
    block: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("w_bits", VALID_BITS), ("a_bits", ACTIVATION_BITS)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value not in allowed):
                raise SchemeError(f"{name} must be one of {_choices(allowed)}, got {value!r}")
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise SchemeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.form not in FORMS:
            raise SchemeError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.form == "dynamic" and (self.w_bits, self.a_bits) != (8, 8):
            raise SchemeError("the dynamic form is int8 weights and activations (w8a8d)")
        if self.form == "nbits":
            if self.w_bits is None or self.a_bits is not None:
                raise SchemeError("the nbits form quantizes weights only (w4nb, w8nb)")
            block = self.block or 32
            if block < 16 or block & (block - 1):
                raise SchemeError(f"nbits block must be a power of two >= 16, got {self.block}")
            object.__setattr__(self, "block", block)
        elif self.block:
            raise SchemeError("block applies to the nbits form only")

    # -- what it is ---------------------------------------------------------------------------
    @property
    def is_float(self) -> bool:
        return self.w_bits is None and self.a_bits is None

    @property
    def quantizes_activations(self) -> bool:
        """Static activation quantizers in the graph (the dynamic form computes them at run time)."""
        return self.a_bits is not None and self.form == "qdq"

    @property
    def label(self) -> str:
        """Stable text form; flags (per-channel, symmetry) are not part of it."""
        if self.is_float:
            return "float"
        if self.form == "dynamic":
            return "w8a8d"
        if self.form == "nbits":
            return f"w{self.w_bits}nb" + ("" if self.block == 32 else str(self.block))
        return f"w{_b(self.w_bits)}a{_b(self.a_bits)}"

    def bits(self) -> list[int]:
        return [b for b in (self.w_bits, self.a_bits) if b is not None]

    # -- text and JSON --------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Precision:
        """A label: see `LABEL_HELP`."""
        label = str(text).strip().lower()
        if label == "float":
            return cls(None, None)
        if _DYNAMIC.match(label):
            return cls(8, 8, form="dynamic")
        match = _NBITS.match(label)
        if match:
            return cls(int(match.group(1)), None, form="nbits", block=int(match.group(2) or 32))
        match = _QDQ.match(label)
        if not match:
            raise SchemeError(f"unknown precision {text!r}; use {LABEL_HELP}")
        return cls(parse_bits(match.group(1)), parse_bits(match.group(2), allowed=ACTIVATION_BITS))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("w_bits", "a_bits"):
            data[name] = "float" if data[name] is None else data[name]
        if self.form != "nbits":
            data.pop("block")
        return data

    @classmethod
    def from_json(cls, data: Any, base: Precision | None = None, where: str = "") -> Precision:
        """A label, or an object whose keys override `base` (flags carry over from it)."""
        what = where or "precision"
        if isinstance(data, str):
            parsed = cls.parse(data)
            flags = {k: getattr(base, k) for k in _FLAGS} if base is not None else {}
            return replace(parsed, **flags)
        if not isinstance(data, Mapping):
            raise SchemeError(f"{what} must be a label or an object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise SchemeError(f"unknown key(s) {unknown} in {what}; valid: {list(_KEYS)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key.endswith("_bits"):
                allowed = ACTIVATION_BITS if key == "a_bits" else VALID_BITS
                values[key] = parse_bits(value, f"{what}.{key}", allowed)
            elif key == "block":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise SchemeError(f"{what}.block must be an integer, got {value!r}")
                values[key] = value
            else:
                values[key] = value
        start = base or cls()
        if values.get("form", start.form) != "nbits" and "block" not in values:
            values["block"] = 0
        return replace(start, **values)


def _b(bits: int | None) -> str:
    return "f" if bits is None else str(bits)


FLOAT = Precision(None, None)
W8A8 = Precision(8, 8)
