"""Per-layer precision: what a mixed-precision scheme says about each quantizable layer.

A `Scheme` is bound to a model's layer names so that a typo is caught before any work
starts. Bits are 2, 4 or 8; `None` means the tensor stays in float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mpqc.errors import MpqcError

__all__ = ["VALID_BITS", "SHORTHANDS", "LayerPrecision", "Scheme", "parse_bits"]

VALID_BITS: tuple[int, ...] = (2, 4, 8)
SHORTHANDS: tuple[str, ...] = ("w8a8", "w4a8", "w4a4", "w2a8", "float")
_SHORTHAND = re.compile(r"^w(2|4|8|f)a(2|4|8|f)$")
_BITS_CHOICES = "2, 4, 8 or float"


def parse_bits(value: Any, what: str = "bits") -> int | None:
    """Accept 2/4/8, '8', 'float', 'f', null; anything else is an error listing the choices."""
    if value is None or (isinstance(value, str) and value.lower() in ("float", "f", "fp32")):
        return None
    if isinstance(value, bool):
        raise MpqcError(f"{what} must be one of {_BITS_CHOICES}, got {value!r}")
    try:
        bits = int(value)
    except (TypeError, ValueError):
        raise MpqcError(f"{what} must be one of {_BITS_CHOICES}, got {value!r}") from None
    if bits not in VALID_BITS or str(value).strip() not in (str(bits), f"{bits}.0"):
        raise MpqcError(f"{what} must be one of {_BITS_CHOICES}, got {value!r}")
    return bits


@dataclass(frozen=True)
class LayerPrecision:
    """How one layer is quantized.

    Weights are signed integers; `w_symmetric` fixes their zero point at 0 (needed by ONNX
    Runtime's per-channel int8 kernels). Activations are unsigned with a zero point unless
    `a_symmetric`.
    """

    w_bits: int | None = 8
    a_bits: int | None = 8
    per_channel: bool = True
    w_symmetric: bool = True
    a_symmetric: bool = False

    def __post_init__(self) -> None:
        for name in ("w_bits", "a_bits"):
            value = getattr(self, name)
            if value is not None and value not in VALID_BITS:
                raise MpqcError(f"{name} must be one of {_BITS_CHOICES}, got {value!r}")
        for name in ("per_channel", "w_symmetric", "a_symmetric"):
            if not isinstance(getattr(self, name), bool):
                raise MpqcError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def is_float(self) -> bool:
        return self.w_bits is None and self.a_bits is None

    @property
    def label(self) -> str:
        def b(x: int | None) -> str:
            return "f" if x is None else str(x)

        return "float" if self.is_float else f"w{b(self.w_bits)}a{b(self.a_bits)}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("w_bits", "a_bits"):
            data[name] = "float" if data[name] is None else data[name]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: LayerPrecision | None = None, where: str = "") -> LayerPrecision:
        if not isinstance(data, Mapping):
            raise MpqcError(f"{where or 'layer precision'} must be an object, got {type(data).__name__}")
        known = {"w_bits", "a_bits", "per_channel", "w_symmetric", "a_symmetric"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MpqcError(f"unknown key(s) {unknown} in {where or 'layer precision'}; valid: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            values[key] = parse_bits(value, f"{where}.{key}".lstrip(".")) if key.endswith("_bits") else value
        return replace(base or cls(), **values)

    @classmethod
    def from_shorthand(cls, text: str) -> LayerPrecision:
        text = text.strip().lower()
        if text == "float":
            return cls(w_bits=None, a_bits=None)
        match = _SHORTHAND.match(text)
        if not match:
            raise MpqcError(
                f"unknown scheme {text!r}; use one of {', '.join(SHORTHANDS)} (or wXaY with X, Y in 2, 4, 8, f)"
                " or a scheme .json file"
            )
        return cls(w_bits=parse_bits(match.group(1)), a_bits=parse_bits(match.group(2)))


@dataclass(frozen=True)
class Scheme:
    """A precision for every quantizable layer of one model, by layer name."""

    layers: Mapping[str, LayerPrecision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    def __getitem__(self, name: str) -> LayerPrecision:
        return self.layers[name]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.layers.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scheme) and dict(self.layers) == dict(other.layers)

    @classmethod
    def uniform(cls, layer_names: Iterable[str], precision: LayerPrecision) -> Scheme:
        return cls({name: precision for name in layer_names})

    @classmethod
    def parse(cls, spec: str | Path | Mapping[str, Any] | Scheme, layer_names: Iterable[str]) -> Scheme:
        """A shorthand (`w4a8`), a path to a JSON file, a JSON-like mapping or a Scheme."""
        names = list(layer_names)
        if isinstance(spec, Scheme):
            return spec.bound_to(names)
        if isinstance(spec, Mapping):
            return cls.from_json(spec, names)
        text = str(spec)
        if text.endswith(".json") or Path(text).is_file():
            path = Path(text)
            if not path.is_file():
                raise MpqcError(f"scheme file not found: {path}")
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise MpqcError(f"scheme file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
            return cls.from_json(data, names)
        return cls.uniform(names, LayerPrecision.from_shorthand(text))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], layer_names: Iterable[str]) -> Scheme:
        """`{"default": {...} or "w4a8", "layers": {name: {...} or "w2a8"}}`; unnamed layers take the default."""
        names = list(layer_names)
        if not isinstance(data, Mapping):
            raise MpqcError("a scheme must be a JSON object with 'default' and/or 'layers'")
        unknown = sorted(set(data) - {"default", "layers"})
        if unknown:
            raise MpqcError(f"unknown key(s) {unknown} in scheme; valid: ['default', 'layers']")
        default = _precision(data.get("default", "w8a8"), LayerPrecision(), "default")
        given = data.get("layers", {})
        if not isinstance(given, Mapping):
            raise MpqcError("scheme 'layers' must be an object mapping layer names to precisions")
        unknown_layers = [name for name in given if name not in names]
        if unknown_layers:
            raise MpqcError(
                f"scheme names unknown layer(s) {unknown_layers[:5]}; the model's layers are: {_preview(names)}"
            )
        return cls({name: _precision(given[name], default, name) if name in given else default for name in names})

    def to_json(self) -> dict[str, Any]:
        return {"layers": {name: prec.to_json() for name, prec in self.layers.items()}}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    def bound_to(self, layer_names: Iterable[str]) -> Scheme:
        names = list(layer_names)
        unknown = [name for name in self.layers if name not in names]
        missing = [name for name in names if name not in self.layers]
        if unknown:
            raise MpqcError(f"scheme names unknown layer(s) {unknown[:5]}; the model's layers are: {_preview(names)}")
        if missing:
            raise MpqcError(f"scheme gives no precision for layer(s) {missing[:5]}")
        return self

    def uses_bits(self, bits: int) -> bool:
        return any(bits in (p.w_bits, p.a_bits) for p in self.layers.values())

    def summary(self) -> str:
        labels = sorted({p.label for p in self.layers.values()})
        return labels[0] if len(labels) == 1 else "mixed(" + ",".join(labels) + ")"


def _precision(value: Any, base: LayerPrecision, where: str) -> LayerPrecision:
    if isinstance(value, str):
        return replace(LayerPrecision.from_shorthand(value), **_flags(base))
    return LayerPrecision.from_json(value, base, where)


def _flags(p: LayerPrecision) -> dict[str, bool]:
    return {"per_channel": p.per_channel, "w_symmetric": p.w_symmetric, "a_symmetric": p.a_symmetric}


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
