"""What a target is: a name, the precisions it executes per op type, and a cost model that
gives each layer's cost at each precision for one model. A budget means nothing without one."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from mpqc.analysis import Analysis
from mpqc.scheme import Scheme

__all__ = ["Target", "CostModel", "Precision", "FLOAT", "PRECISIONS", "precision_label"]

#: (weight bits, activation bits); None is float.
Precision = tuple[int | None, int | None]
FLOAT: Precision = (None, None)
PRECISIONS: tuple[Precision, ...] = (
    FLOAT,
    (8, 8),
    (4, 8),
    (2, 8),
    (8, 4),
    (4, 4),
    (2, 4),
    (4, 2),
    (2, 2),
    (8, None),
    (4, None),
    (2, None),
)


def precision_label(precision: Precision) -> str:
    w, a = precision
    if w is None and a is None:
        return "float"
    return f"w{'f' if w is None else w}a{'f' if a is None else a}"


class CostModel(abc.ABC):
    """Costs of one model on one target. Seconds are for one sample (batch 1)."""

    analysis: Analysis

    @abc.abstractmethod
    def layer_cost(self, layer: str, precision: Precision) -> float:
        """This layer's own share of the latency at this precision, in seconds."""

    @abc.abstractmethod
    def latency(self, scheme: Scheme) -> float:
        """Predicted latency of the whole model under `scheme`, in seconds."""


@dataclass(frozen=True)
class Target(abc.ABC):
    name: str
    description: str

    @abc.abstractmethod
    def supports(self, op_type: str, precision: Precision) -> bool:
        """Whether this target executes `op_type` at `precision`."""

    def precisions(self, op_type: str) -> list[Precision]:
        return [p for p in PRECISIONS if self.supports(op_type, p)]

    @property
    def measurable(self) -> bool:
        return False
