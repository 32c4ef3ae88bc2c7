"""What a target is: the precisions it runs per layer (its search space), how it lowers a
scheme, and a cost model that prices each layer at each precision for one model.

A budget means nothing without a target. Every target answers the same questions, so no
code outside the registry asks which kind of target it holds."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mpqc.analysis import Analysis, Layer
from mpqc.errors import SchemeError, TargetError
from mpqc.frontend import Prepared
from mpqc.precision import Precision
from mpqc.scheme import Scheme

__all__ = ["Target", "CostModel", "CostInputs", "Measurement", "precisions_text"]


class CostInputs(Protocol):
    """What a cost model needs from a workload (a `mpqc.workload.Workload` is one)."""

    @property
    def prepared(self) -> Prepared: ...

    @property
    def use_cache(self) -> bool: ...

    def sample_feed(self) -> dict[str, np.ndarray]:
        """One sample in the model's layout, for timing."""
        ...

    def say(self, line: str) -> None:
        """Progress for the person waiting."""
        ...


@dataclass(frozen=True)
class Measurement:
    """Wall time per run: median and interquartile range."""

    median_s: float
    iqr_s: float
    runs: int

    def to_json(self) -> dict[str, float]:
        return {"median_ms": self.median_s * 1e3, "iqr_ms": self.iqr_s * 1e3, "runs": self.runs}


class CostModel(abc.ABC):
    """Costs of one model on one target. Seconds are for one sample (batch 1)."""

    analysis: Analysis
    #: whether `measure` runs schemes for real on this machine
    measures: bool = False
    #: whether the tables came from the cache
    cached: bool = False

    @abc.abstractmethod
    def layer_cost(self, layer: str, precision: Precision) -> float:
        """This layer's own share of the latency at this precision, in seconds."""

    @abc.abstractmethod
    def latency(self, scheme: Scheme) -> float:
        """Predicted latency of the whole model under `scheme`, in seconds."""

    def measure(self, schemes: Sequence[Scheme]) -> list[Measurement]:
        """Run the schemes in turn, interleaved, on this machine (measuring targets only)."""
        raise TargetError("this target cannot run models; it only predicts")

    def measured_uniform(self) -> dict[str, Measurement]:
        """Measured wall times of uniform schemes by precision label, where the target took them."""
        return {}

    def info(self) -> dict[str, Any]:
        return {}


class Target(abc.ABC):
    """A runtime or a chip. Subclasses set `name` and `description`."""

    name: str = ""
    description: str = ""
    #: whether costs are measured on this machine (else computed from a description)
    measures: bool = False
    #: lower sub-8-bit layers with quantized activations to int8 kernels (CPUs whose only
    #: fast low-bit arithmetic is int8)
    int8_kernels: bool = False

    @abc.abstractmethod
    def precisions(self) -> tuple[Precision, ...]:
        """Every precision this target runs (for some layer kind), best-known first."""

    def default_space(self) -> tuple[Precision, ...]:
        """The precisions compile searches and profile shows unless told otherwise."""
        return self.precisions()

    def search_space(self, layer: Layer, space: Sequence[Precision] | None = None) -> tuple[Precision, ...]:
        """The precisions of `space` (default: `default_space`) this target runs for this layer."""
        return tuple(p for p in (space or self.default_space()) if self.runs(layer, p))

    def runs(self, layer: Layer, precision: Precision) -> bool:
        return any(_same_kind(precision, p) for p in self.precisions())

    @abc.abstractmethod
    def cost_model(self, inputs: CostInputs) -> CostModel:
        """Costs for the model in `inputs` (measured, or computed)."""

    def measure_interleaved(
        self, payloads: list[bytes], feed: dict[str, np.ndarray], rounds: int | None = None
    ) -> list[Measurement]:
        """Run the models (bytes) in turn, round after round, here (measuring targets only)."""
        raise TargetError(f"target {self.name} cannot run models; it only predicts")

    def recipe_defaults(self) -> dict[str, Any]:
        """Recipe settings this target wants (e.g. the 8-bit weight range its kernels take)."""
        return {}

    def info(self) -> dict[str, Any]:
        """What was detected or assumed (CPU features, threads): shown in reports."""
        return {"name": self.name, "description": self.description, "measures": self.measures}

    def parse_space(self, text: str | Sequence[str | Precision] | None) -> tuple[Precision, ...]:
        """The precisions to search or show: `default_space`, or a comma-separated list of
        labels this target runs (anything else is refused by name)."""
        if text is None:
            return self.default_space()
        items = text.split(",") if isinstance(text, str) else list(text)
        space = tuple(p if isinstance(p, Precision) else Precision.parse(p) for p in items if str(p).strip())
        if not space:
            raise SchemeError(f"empty precision list; {self.name} runs {precisions_text(self.precisions())}")
        self.check_space(space)
        return tuple(dict.fromkeys(space))

    def check_space(self, wanted: Sequence[Precision]) -> None:
        """Refuse, by name, precisions this target does not run."""
        runnable = self.precisions()
        for precision in wanted:
            if not any(_same_kind(precision, p) for p in runnable):
                raise SchemeError(
                    f"target {self.name} does not run {precision.label}; it runs {precisions_text(runnable)}"
                )

    def check_scheme(self, scheme: Scheme, analysis: Analysis) -> None:
        for layer in analysis.layers:
            precision = scheme[layer.name]
            if not self.runs(layer, precision):
                options = self.search_space(layer)
                raise SchemeError(
                    f"target {self.name} does not run {precision.label} for {layer.op_type} {layer.name}; "
                    f"it runs {precisions_text(options)}"
                )


def _same_kind(a: Precision, b: Precision) -> bool:
    return a.label == b.label


def precisions_text(precisions: Sequence[Precision]) -> str:
    """Precision labels joined for a message."""
    return ", ".join(p.label for p in precisions)
