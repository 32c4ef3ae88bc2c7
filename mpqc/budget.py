"""Budgets: `latency=2.5ms`, `size=40KB`, `memory=256KB`, `bops=1.2G`, or relative to the
uniform int8 scheme (`latency=0.6x`). Several may be joined with commas."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mpqc.cost import SchemeCost
from mpqc.errors import MpqcError

__all__ = ["Budget", "Limit"]

_UNITS = {
    "latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6},
    "size": {"b": 1, "kb": 1024, "mb": 1024**2},
    "memory": {"b": 1, "kb": 1024, "mb": 1024**2},
    "bops": {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12},
}
_TERM = re.compile(r"^(?P<metric>[a-z]+)\s*=\s*(?P<value>[0-9]*\.?[0-9]+(e[+-]?\d+)?)\s*(?P<unit>[a-z]*)$")


@dataclass(frozen=True)
class Limit:
    metric: str
    value: float
    relative: bool

    def describe(self) -> str:
        return f"{self.metric}={self.value:g}{'x' if self.relative else ''}"


@dataclass(frozen=True)
class Budget:
    limits: tuple[Limit, ...]

    @classmethod
    def parse(cls, text: str) -> Budget:
        limits = []
        for term in [t.strip().lower() for t in text.split(",") if t.strip()]:
            match = _TERM.match(term)
            if not match or match.group("metric") not in _UNITS:
                raise MpqcError(
                    f"cannot read budget {term!r}; use metric=value with metric in {', '.join(_UNITS)}, "
                    "e.g. latency=2.5ms, size=40KB, memory=256KB, bops=1.2G or latency=0.6x"
                )
            metric, value, unit = match.group("metric"), float(match.group("value")), match.group("unit")
            if unit == "x":
                limits.append(Limit(metric, value, True))
                continue
            units = _UNITS[metric]
            if unit not in units:
                raise MpqcError(
                    f"unknown unit {unit!r} for {metric}; use one of {', '.join(u or '(none)' for u in units)} or x"
                )
            limits.append(Limit(metric, value * units[unit], False))
        if not limits:
            raise MpqcError("empty budget")
        return cls(tuple(limits))

    def absolute(self, reference: SchemeCost) -> dict[str, float]:
        """Each limit in absolute units; relative limits are multiples of `reference` (uniform int8)."""
        return {
            limit.metric: limit.value * reference.metric(limit.metric) if limit.relative else limit.value
            for limit in self.limits
        }

    def fits(self, cost: SchemeCost, reference: SchemeCost) -> bool:
        return all(cost.metric(metric) <= bound * (1 + 1e-9) for metric, bound in self.absolute(reference).items())

    def describe(self) -> str:
        return ",".join(limit.describe() for limit in self.limits)
