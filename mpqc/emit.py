"""From a scheme to the model ONNX Runtime runs: the back-end passes in their fixed order,
and the check that every emitted model loads before anyone writes or times it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import onnx
import onnx_ir as ir

from mpqc.errors import ModelError, first_line
from mpqc.frontend import Prepared
from mpqc.passes.insert_qdq import InsertQDQPass, QDQResult
from mpqc.passes.upgrade_opset import UpgradeOpsetPass
from mpqc.recipe import Recipe
from mpqc.runtime import make_session
from mpqc.scheme import Scheme
from mpqc.stats import Calibration

__all__ = ["Emitted", "emit", "refused_low_bit", "run_loadable", "serialize"]

T = TypeVar("T")


@dataclass
class Emitted:
    """An emitted model and what it stores."""

    model: ir.Model
    #: bytes of all layer weights at their stored widths (float layers at 4 bytes a value)
    weight_bytes: int
    #: (tensor, bits) of every activation range in the model
    ranges: tuple[tuple[str, int], ...] = ()
    notes: list[str] = field(default_factory=list)

    def proto(self) -> onnx.ModelProto:
        return ir.serde.serialize_model(self.model)

    def payload(self) -> bytes:
        return serialize(self.model)


def serialize(model: ir.Model) -> bytes:
    """The model's bytes, as ONNX Runtime and files take them."""
    return ir.serde.serialize_model(model).SerializeToString()


def emit(
    prepared: Prepared,
    scheme: Scheme,
    calibration: Calibration,
    recipe: Recipe | None = None,
    int8_kernels: bool = False,
    check: bool = False,
) -> Emitted:
    """The QDQ model of one scheme (no evaluation). `int8_kernels` lowers for CPUs whose only
    fast low-bit kernels are int8. `check` loads the result in ONNX Runtime: should it still
    refuse a 4- or 2-bit type somewhere, every sub-8-bit activation is emitted in an 8-bit
    container (same grid; see `InsertQDQPass`) and the model checked again."""
    emitted = _emit(prepared, scheme, calibration, recipe, int8_kernels, containers=False)
    if check:
        try:
            make_session(emitted.payload())
        except ModelError as exc:
            if not refused_low_bit(exc):
                raise
            emitted = _emit(prepared, scheme, calibration, recipe, int8_kernels, containers=True)
            make_session(emitted.payload())
            emitted.notes.append(
                f"ONNX Runtime refused a low-bit type ({first_line(exc)[-80:]}); every sub-8-bit activation is "
                "held in an 8-bit container with the same grid"
            )
    return emitted


def refused_low_bit(exc: ModelError) -> bool:
    """Whether ONNX Runtime refused a model for a 4- or 2-bit type (it fuses some sub-8-bit
    QDQ patterns into integer kernels it then cannot load); 8-bit containers fix that."""
    return any(t in str(exc) for t in ("int4", "int2"))


def run_loadable(build: Callable[[bool], bytes], use: Callable[[bytes], T]) -> T:
    """`use` the model `build(check=False)` makes; should ONNX Runtime refuse it for a
    sub-8-bit type, `use` `build(check=True)` instead (see `emit`'s check). The common case
    pays for no extra session."""
    try:
        return use(build(False))
    except ModelError as exc:
        if not refused_low_bit(exc):
            raise
    return use(build(True))


def _emit(
    prepared: Prepared,
    scheme: Scheme,
    calibration: Calibration,
    recipe: Recipe | None,
    int8_kernels: bool,
    containers: bool,
) -> Emitted:
    work = prepared.copy()
    if scheme.uses_bits(2):
        work = UpgradeOpsetPass(25)(work).model
    result = InsertQDQPass(prepared.analysis, scheme, calibration, recipe, int8_kernels, containers)(work)
    assert isinstance(result, QDQResult)
    return Emitted(result.model, result.weight_bytes, result.ranges, list(result.notes))
