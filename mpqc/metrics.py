"""The cost metrics a budget can bound, with their units: the one place that knows that
latency is in seconds and shown in ms, that size accepts KB, and which metrics add up
over layers (and so can go into the integer program)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["Metric", "METRICS", "metric"]


@dataclass(frozen=True)
class Metric:
    """A cost metric: its units, how budgets write it, and whether it adds up over layers."""

    name: str
    #: unit of stored values (what `SchemeCost` holds)
    base_unit: str
    #: unit shown to people, and how many of it make one base unit
    display_unit: str
    display_factor: float
    #: suffixes a budget may use, each with its size in base units
    units: MappingProxyType[str, float]
    #: a scheme's value is the sum of its layers' values (usable in the integer program)
    additive: bool
    description: str
    #: the suffix (a key of `units`) a budget is written back with
    budget_suffix: str

    def format(self, value: float) -> str:
        return f"{value * self.display_factor:.4g} {self.display_unit}"

    def budget_text(self, value: float) -> str:
        """`2.5ms`, `40KB`, `1.2G`: a value as a budget term would give it (parses back)."""
        suffix = self.budget_suffix if self.name == "latency" else self.budget_suffix.upper()
        return f"{value / self.units[self.budget_suffix]:.6g}{suffix}"


def _m(
    name: str, base: str, shown: str, factor: float, units: dict[str, float], additive: bool, text: str, suffix: str
) -> Metric:
    return Metric(name, base, shown, factor, MappingProxyType(units), additive, text, suffix)


METRICS: MappingProxyType[str, Metric] = MappingProxyType(
    {
        "latency": _m(
            "latency", "s", "ms", 1e3, {"s": 1.0, "ms": 1e-3, "us": 1e-6}, True, "time per sample (batch 1)", "ms"
        ),
        "size": _m(
            "size", "B", "KB", 1 / 1024, {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}, True, "weight bytes", "kb"
        ),
        "memory": _m(
            "memory",
            "B",
            "KB",
            1 / 1024,
            {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3},
            False,
            "peak activation bytes",
            "kb",
        ),
        "bops": _m(
            "bops",
            "BOPs",
            "GBOPs",
            1e-9,
            {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12},
            True,
            "bit operations (MACs x weight bits x activation bits)",
            "g",
        ),
    }
)


def metric(name: str) -> Metric:
    """The metric called `name` (latency, size, memory or bops)."""
    return METRICS[name]
