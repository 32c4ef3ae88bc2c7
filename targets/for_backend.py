"""A target narrowed to what a deployment backend accepts (`--backend`).

The cost model stays the target's own (on `ort-cpu`, a TensorRT- or QNN-shaped scheme is
priced by its closest CPU run: a proxy, and the report says so); what the search may
choose per layer, and how the recipe emits it, follow the backend (`mpqc.backend`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mpqc.targets.base import CostInputs, CostModel, Measurement, Target, precisions_text

from mpqc.analysis import Layer
from mpqc.backend import Backend
from mpqc.errors import BackendError, SchemeError
from mpqc.precision import Precision

__all__ = ["BackendTarget"]


class BackendTarget(Target):
    """`inner` with only the precisions `backend` runs; everything else is `inner`'s."""

    def __init__(self, inner: Target, backend: Backend) -> None:
        self.inner, self.backend = inner, backend
        self.name = inner.name
        self.description = f"{inner.description} (constrained to the {backend.name} backend)"
        self.measures = inner.measures
        self.int8_kernels = inner.int8_kernels
        if not any(not p.is_float for p in self.precisions()):
            raise BackendError(
                f"target {inner.name} runs nothing the {backend.name} backend accepts "
                f"(it runs {precisions_text(inner.precisions())}; {backend.name} takes "
                f"{', '.join(sorted(backend.labels or ()))})"
            )

    def precisions(self) -> tuple[Precision, ...]:
        return tuple(p for p in self.inner.precisions() if self.backend.allows_kind(p))

    def default_space(self) -> tuple[Precision, ...]:
        return tuple(p for p in self.inner.default_space() if self.backend.allows_kind(p))

    def runs(self, layer: Layer, precision: Precision) -> bool:
        return self.inner.runs(layer, precision) and self.backend.allows(layer, precision)

    def check_space(self, wanted: Sequence[Precision]) -> None:
        for precision in wanted:
            if not self.backend.allows_kind(precision) and not precision.is_float:
                raise SchemeError(
                    f"backend {self.backend.name} does not run {precision.label}; with target {self.name} it runs "
                    f"{precisions_text(self.precisions())}"
                )
        self.inner.check_space(wanted)

    def cost_model(self, inputs: CostInputs) -> CostModel:
        return self.inner.cost_model(inputs)

    def measure_interleaved(
        self, payloads: list[bytes], feed: dict[str, np.ndarray], rounds: int | None = None
    ) -> list[Measurement]:
        return self.inner.measure_interleaved(payloads, feed, rounds)

    def recipe_defaults(self) -> dict[str, Any]:
        return {**self.inner.recipe_defaults(), **self.backend.recipe_settings()}

    def info(self) -> dict[str, Any]:
        return {**self.inner.info(), "backend": self.backend.to_json()}
