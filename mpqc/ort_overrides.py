"""mpqc's schemes as ONNX Runtime quantizer options, and back.

A team that standardises on ONNX Runtime's `quantize_static` can apply a scheme mpqc
chose with it: `to_ort_overrides` writes the `extra_options["TensorQuantOverrides"]` (each
layer's weight type, per-channel axis, symmetry and 8-bit range; each quantized layer
input's type with mpqc's calibrated scale and zero point), `nodes_to_exclude` (the float
layers) and the global options that reproduce the rest. The overrides name the tensors
of the *prepared* model (after mpqc's front end: simplified, BatchNorm folded), which is
written beside them; `quantize_static` runs on that file.

`scheme_from_ort_overrides` reads such options (mpqc's or a hand-written ORT config) as
a scheme: weight and activation types per layer, excluded nodes in float. Tensor names
that are not in the model, and types mpqc has no precision for, are refused by name.

Only the static QDQ form has an ORT-quantizer equivalent: a scheme with `w8a8d` or `w4nb`
layers (ORT's `quantize_dynamic` and `MatMulNBitsQuantizer`, separate tools) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpqc.analysis import Analysis
from mpqc.errors import SchemeError
from mpqc.frontend import Prepared
from mpqc.passes._common import const_array
from mpqc.precision import FLOAT, Precision
from mpqc.quant import activation_qparams, weight_qparams
from mpqc.ranges import range_of
from mpqc.recipe import Recipe
from mpqc.scheme import Scheme
from mpqc.stats import Calibration

__all__ = ["to_ort_overrides", "scheme_from_ort_overrides", "is_ort_overrides", "ort_quant_options"]

#: (bits, signed) -> ORT QuantType name
_TYPES = {(8, True): "QInt8", (8, False): "QUInt8", (4, True): "QInt4", (4, False): "QUInt4"}
_BITS = {name: bits for (bits, _), name in _TYPES.items()}
_KEY = "TensorQuantOverrides"


def is_ort_overrides(data: Any) -> bool:
    """Whether a JSON document is ORT quantizer options (rather than an mpqc scheme)."""
    return isinstance(data, Mapping) and _KEY in data.get("extra_options", {})


def to_ort_overrides(prepared: Prepared, scheme: Scheme, calibration: Calibration, recipe: Recipe) -> dict[str, Any]:
    """`quantize_static` keyword options (JSON: quant types as their names) reproducing
    `scheme`: weights with mpqc's per-channel scales (MSE below 8 bits), inputs with its
    calibrated ranges."""
    analysis = prepared.analysis
    initializers = prepared.model.graph.initializers
    overrides: dict[str, list[dict[str, Any]]] = {}
    exclude: list[str] = []
    notes: list[str] = []
    for layer in analysis.layers:
        prec = scheme[layer.name]
        if prec.form != "qdq":
            raise SchemeError(
                f"layer {layer.name} is {prec.label}: ONNX Runtime's quantize_static has no such form "
                "(it is quantize_dynamic / MatMulNBitsQuantizer); only static QDQ schemes export as overrides"
            )
        if prec.is_float:
            exclude.append(layer.name)
            continue
        if prec.w_bits is None or prec.a_bits is None:
            raise SchemeError(
                f"layer {layer.name} is {prec.label}: quantize_static quantizes a layer's weights and input together; "
                "weight-only or activation-only layers have no override"
            )
        if prec.w_bits not in (4, 8) or prec.a_bits not in (4, 8):
            raise SchemeError(f"layer {layer.name} is {prec.label}: ONNX Runtime's quantizer has no 2-bit types")
        overrides[layer.weight] = _weight_overrides(
            const_array(initializers[layer.weight]), layer.channel_axis if prec.per_channel else None, prec, recipe
        )
        lo, hi = range_of(
            calibration,
            layer.activation,
            prec.a_bits,
            prec.a_symmetric,
            recipe.method_for(layer.activation, prec.a_bits),
            recipe.percentile,
        )
        params = activation_qparams(lo, hi, prec.a_bits, prec.a_symmetric)
        act = {
            "quant_type": _TYPES[(prec.a_bits, params.signed)],
            "scale": float(params.scale),
            "zero_point": int(params.zero_point),
        }
        previous = overrides.get(layer.activation)
        if previous is not None and previous[0]["quant_type"] != act["quant_type"]:
            notes.append(
                f"{layer.activation} feeds layers at different activation bits; ORT takes one type per tensor: "
                f"kept {previous[0]['quant_type']}"
            )
            continue
        overrides[layer.activation] = [act]
    return {
        "quant_format": "QDQ",
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "per_channel": True,
        "reduce_range": recipe.weights_reduced,
        "nodes_to_exclude": exclude,
        "extra_options": {_KEY: overrides},
        "notes": notes,
    }


def _weight_overrides(weight: Any, axis: int | None, prec: Precision, recipe: Recipe) -> list[dict[str, Any]]:
    """One entry per channel (the first with the type and axis), each with mpqc's scale."""
    assert prec.w_bits is not None and weight is not None
    method = recipe.weight_method_for(prec.w_bits)
    params = weight_qparams(weight, prec.w_bits, axis, prec.w_symmetric, method, recipe.weights_reduced)
    quant_type = _TYPES[(prec.w_bits, True)]
    if axis is None:
        return [{"quant_type": quant_type, "scale": float(params.scale), "zero_point": int(params.zero_point)}]
    entries: list[dict[str, Any]] = [
        {"scale": float(s), "zero_point": int(z)} for s, z in zip(params.scale.ravel(), params.zero_point.ravel())
    ]
    entries[0] = {"quant_type": quant_type, "axis": axis, **entries[0]}
    return entries


def scheme_from_ort_overrides(data: Mapping[str, Any], analysis: Analysis, initializers: set[str]) -> Scheme:
    """The scheme ORT quantizer options describe for the layers of `analysis`; `initializers`
    are the model's initializer names (an override may name a weight or an activation)."""
    extra = data.get("extra_options", {})
    overrides = extra.get(_KEY, {})
    if not isinstance(overrides, Mapping):
        raise SchemeError(f"{_KEY} must be an object of tensor name -> list of overrides")
    known = set(initializers) | set(analysis.activation_tensors) | {layer.activation for layer in analysis.layers}
    for name in overrides:
        if name not in known:
            raise SchemeError(f"{_KEY} names tensor {name!r}, which is not in the model")
    layer_names = set(analysis.layer_names)
    excluded = list(data.get("nodes_to_exclude", []))
    for name in excluded:
        if name not in layer_names:
            raise SchemeError(f"nodes_to_exclude names {name!r}, which is not a quantizable layer of the model")
    default_w = _bits(str(data.get("weight_type", "QInt8")), "weight_type")
    default_a = _bits(str(data.get("activation_type", "QUInt8")), "activation_type")
    per_channel = bool(data.get("per_channel", False))
    layers: dict[str, Precision] = {}
    for layer in analysis.layers:
        if layer.name in excluded:
            layers[layer.name] = FLOAT
            continue
        weight = _first(overrides, layer.weight)
        act = _first(overrides, layer.activation)
        w_bits = _bits(weight["quant_type"], layer.weight) if "quant_type" in weight else default_w
        a_bits = _bits(act["quant_type"], layer.activation) if "quant_type" in act else default_a
        layers[layer.name] = Precision(
            w_bits,
            a_bits,
            per_channel="axis" in weight or per_channel,
            w_symmetric=bool(weight.get("symmetric", True)),
            a_symmetric=str(act.get("quant_type", "QUInt8")).startswith("QInt"),
        )
    return Scheme(layers)


def _first(overrides: Mapping[str, Any], name: str) -> dict[str, Any]:
    entries = overrides.get(name)
    if entries is None:
        return {}
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], Mapping):
        raise SchemeError(f"{_KEY}[{name!r}] must be a non-empty list of objects")
    return dict(entries[0])


def _bits(quant_type: str, where: str) -> int:
    name = quant_type.split(".")[-1]  # "QuantType.QInt8" or "QInt8"
    if name not in _BITS:
        raise SchemeError(f"{where}: quant type {quant_type!r} has no mpqc precision; use one of {sorted(_BITS)}")
    return _BITS[name]


def ort_quant_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """JSON options as `quantize_static` keyword arguments (type names -> QuantType, format
    name -> QuantFormat), mpqc's notes dropped."""
    import numpy as np
    from onnxruntime.quantization import QuantFormat, QuantType

    def qtype(value: Any) -> Any:
        return getattr(QuantType, str(value).split(".")[-1])

    def entry(values: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(values)
        signed = str(out.get("quant_type", "QUInt8")).split(".")[-1].startswith("QInt")
        if "quant_type" in out:
            out["quant_type"] = qtype(out["quant_type"])
        if "zero_point" in out:  # ORT takes numpy values (it squeezes them)
            out["zero_point"] = np.array(out["zero_point"], np.int8 if signed else np.uint8)
        if "scale" in out:
            out["scale"] = np.array(out["scale"], np.float32)
        return out

    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k not in ("notes", "extra_options")}
    kwargs["quant_format"] = getattr(QuantFormat, str(options.get("quant_format", "QDQ")))
    for key in ("activation_type", "weight_type"):
        if key in kwargs:
            kwargs[key] = qtype(kwargs[key])
    overrides = {
        name: [entry(values) for values in entries]
        for name, entries in options.get("extra_options", {}).get(_KEY, {}).items()
    }
    kwargs["extra_options"] = {**options.get("extra_options", {}), _KEY: overrides}
    return kwargs
