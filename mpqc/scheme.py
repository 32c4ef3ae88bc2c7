"""A mixed-precision scheme: one `Precision` for every quantizable layer of a model.

A scheme is bound to a model's layer names, so a typo is caught before any work starts.
Text forms: a shorthand that applies to every layer (`w4a8`, see `mpqc.precision`), or
JSON ``{"default": "w8a8", "layers": {"conv2": "w4a8", "fc": {"w_bits": 4, "a_bits": 8}}}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mpqc.analysis import Analysis, takes_form
from mpqc.errors import SchemeError
from mpqc.precision import FLOAT, W8A8, Precision

__all__ = ["Scheme", "SHORTHANDS"]

SHORTHANDS: tuple[str, ...] = ("w8a8", "w4a8", "w4a4", "w2a8", "w8a8d", "w4nb", "float")


@dataclass(frozen=True)
class Scheme:
    """A precision for every quantizable layer of one model, by layer name."""

    layers: Mapping[str, Precision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    def __reduce__(self) -> tuple[Any, ...]:  # mapping proxies do not pickle
        return (Scheme, (dict(self.layers),))

    def __getitem__(self, name: str) -> Precision:
        return self.layers[name]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.layers.items(), key=lambda item: item[0])))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scheme) and dict(self.layers) == dict(other.layers)

    @classmethod
    def uniform(cls, layer_names: Iterable[str], precision: Precision) -> Scheme:
        return cls({name: precision for name in layer_names})

    def fitted_to(self, analysis: Analysis) -> tuple[Scheme, list[str]]:
        """This scheme with every layer whose op a form cannot take (dynamic or nbits on a
        convolution) in float, as ONNX Runtime's own dynamic and n-bit recipes leave them;
        and a note per form saying how many layers stayed in float."""
        moved: Counter[str] = Counter()
        kinds: dict[str, set[str]] = {}
        layers = dict(self.layers)
        for layer in analysis.layers:
            precision = layers.get(layer.name)
            if precision is not None and not takes_form(layer, precision.form, precision.block):
                layers[layer.name] = FLOAT
                moved[precision.label] += 1
                kinds.setdefault(precision.label, set()).add(layer.op_type)
        notes = [
            f"{label} applies to MatMul/Gemm layers only (nbits: whole blocks along K): {count} "
            f"{'/'.join(sorted(kinds[label]))} layer(s) stay in float"
            for label, count in sorted(moved.items())
        ]
        return (Scheme(layers) if moved else self), notes

    def with_layer(self, layer: str, precision: Precision) -> Scheme:
        """This scheme with one layer changed."""
        return Scheme({**self.layers, layer: precision})

    @classmethod
    def parse(cls, spec: str | os.PathLike[str] | Mapping[str, Any] | Scheme, layer_names: Iterable[str]) -> Scheme:
        """A shorthand (`w4a8`), a path to a JSON file, a JSON-like mapping or a Scheme."""
        names = list(layer_names)
        if isinstance(spec, Scheme):
            return spec.bound_to(names)
        if isinstance(spec, Mapping):
            return cls.from_json(spec, names)
        text = os.fspath(spec)
        path = Path(text)
        if text.endswith(".json") or path.is_file():
            if not path.is_file():
                raise SchemeError(f"scheme file not found: {path}")
            try:
                data = json.loads(path.read_bytes().decode("utf-8"))
            except UnicodeDecodeError:
                raise SchemeError(f"scheme file {path} is not UTF-8 text") from None
            except json.JSONDecodeError as exc:
                raise SchemeError(f"scheme file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
            except OSError as exc:
                raise SchemeError(f"cannot read scheme file {path}: {exc.strerror}") from None
            return cls.from_json(data, names)
        try:
            precision = Precision.parse(text)
        except SchemeError:
            raise SchemeError(
                f"unknown scheme {text!r}; use a precision label ({', '.join(SHORTHANDS)}, any wXaY with X, Y "
                "in 2, 4, 8, f) or a scheme .json file"
            ) from None
        return cls.uniform(names, precision)

    @classmethod
    def from_json(cls, data: Any, layer_names: Iterable[str]) -> Scheme:
        """`{"default": ..., "layers": {name: ...}}`; layers not named take the default."""
        names = list(layer_names)
        if not isinstance(data, Mapping):
            raise SchemeError("a scheme must be a JSON object with 'default' and/or 'layers'")
        unknown = sorted(set(data) - {"default", "layers"})
        if unknown:
            raise SchemeError(f"unknown key(s) {unknown} in scheme; valid: ['default', 'layers']")
        default = Precision.from_json(data.get("default", "w8a8"), W8A8, "default")
        given = data.get("layers", {})
        if not isinstance(given, Mapping):
            raise SchemeError("scheme 'layers' must be an object mapping layer names to precisions")
        unknown_layers = [name for name in given if name not in names]
        if unknown_layers:
            raise SchemeError(
                f"scheme names unknown layer(s) {unknown_layers[:5]}; the model's layers are: {_preview(names)}"
            )
        return cls(
            {name: Precision.from_json(given[name], default, name) if name in given else default for name in names}
        )

    def to_json(self) -> dict[str, Any]:
        return {"layers": {name: prec.to_json() for name, prec in self.layers.items()}}

    def labels(self) -> dict[str, str]:
        """Layer -> precision label (flags left out): the compact form reports use."""
        return {name: prec.label for name, prec in self.layers.items()}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @property
    def key(self) -> str:
        """Eight hex digits naming this exact scheme (flags included)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:8]

    def bound_to(self, layer_names: Iterable[str]) -> Scheme:
        names = list(layer_names)
        unknown = [name for name in self.layers if name not in names]
        missing = [name for name in names if name not in self.layers]
        if unknown:
            raise SchemeError(f"scheme names unknown layer(s) {unknown[:5]}; the model's layers are: {_preview(names)}")
        if missing:
            raise SchemeError(f"scheme gives no precision for layer(s) {missing[:5]}")
        return self

    def uses_bits(self, bits: int) -> bool:
        return any(bits in p.bits() for p in self.layers.values())

    def summary(self) -> str:
        """`w8a8` for a uniform scheme; `mixed 10 w8a8 + 2 float [1a2b3c4d]` otherwise (the key
        tells apart mixed schemes with the same counts)."""
        counts = Counter(p.label for p in self.layers.values())
        if len(counts) == 1:
            return next(iter(counts))
        parts = " + ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"mixed {parts} [{self.key}]"


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
