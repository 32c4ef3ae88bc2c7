"""Budgets: what a scheme may cost.

Text form, terms joined by commas: `latency=2.5ms`, `size=40KB`, `memory=256KB`, `bops=1.2G`,
or relative to a reference scheme: `latency=0.6x` (uniform int8, the default reference),
`latency=0.6xint8`, `latency=0.5xfloat` (half the float model's latency, "2x faster").

A `Budget` is what the user wrote; a `ResolvedBudget` holds the absolute bounds, the
reference costs they were computed from, and answers `fits`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpqc.cost import SchemeCost
from mpqc.errors import BudgetError
from mpqc.metrics import METRICS

__all__ = ["Budget", "Limit", "ResolvedBudget", "REFERENCES"]

#: schemes a relative limit may be measured against
REFERENCES = ("int8", "float")
_TERM = re.compile(r"^(?P<metric>[a-z_]+)\s*=\s*(?P<value>[0-9]*\.?[0-9]+(e[+-]?\d+)?)\s*(?P<suffix>[a-z0-9]*)$")
_EXAMPLES = "e.g. latency=2.5ms, size=40KB, memory=256KB, bops=1.2G, latency=0.6x (of int8) or latency=0.5xfloat"


@dataclass(frozen=True)
class Limit:
    """One bounded metric: absolute (base units), or a multiple of a reference scheme's cost."""

    metric: str
    #: base units (absolute) or a multiple of the reference's cost (relative)
    value: float
    #: None for an absolute limit, else one of REFERENCES
    reference: str | None = None

    @property
    def relative(self) -> bool:
        return self.reference is not None

    def describe(self) -> str:
        if self.reference is None:
            return f"{self.metric}={METRICS[self.metric].budget_text(self.value)}"
        suffix = "" if self.reference == "int8" else self.reference
        return f"{self.metric}={self.value:g}x{suffix}"


@dataclass(frozen=True)
class Budget:
    """What the user wrote: one limit per metric. `resolve` makes it absolute for one model and target."""

    limits: tuple[Limit, ...]

    @classmethod
    def parse(cls, text: str) -> Budget:
        if not isinstance(text, str):
            raise BudgetError(f"a budget is text like {_EXAMPLES}")
        limits: list[Limit] = []
        for term in [t.strip().lower() for t in text.split(",")]:
            if not term:
                raise BudgetError(f"empty term in budget {text!r}; {_EXAMPLES}")
            limits.append(_parse_term(term))
        if not limits:
            raise BudgetError(f"empty budget; {_EXAMPLES}")
        seen: set[str] = set()
        for limit in limits:
            if limit.metric in seen:
                raise BudgetError(f"budget {text!r} bounds {limit.metric} twice; give each metric once")
            seen.add(limit.metric)
        return cls(tuple(limits))

    @property
    def metrics(self) -> list[str]:
        return [limit.metric for limit in self.limits]

    @property
    def references(self) -> list[str]:
        """The reference schemes this budget needs priced, in a fixed order."""
        used = {limit.reference for limit in self.limits if limit.reference is not None}
        return [ref for ref in REFERENCES if ref in used]

    def describe(self) -> str:
        return ",".join(limit.describe() for limit in self.limits)

    def resolve(self, references: Mapping[str, SchemeCost]) -> ResolvedBudget:
        """Absolute bounds, given the cost of every reference this budget names."""
        bounds = {}
        for limit in self.limits:
            if limit.reference is None:
                bounds[limit.metric] = limit.value
            else:
                bounds[limit.metric] = limit.value * references[limit.reference].metric(limit.metric)
        return ResolvedBudget(self, bounds, dict(references))


def _parse_term(term: str) -> Limit:
    match = _TERM.match(term)
    if not match or match.group("metric") not in METRICS:
        raise BudgetError(
            f"cannot read budget term {term!r}; use metric=value with metric in {', '.join(METRICS)}, {_EXAMPLES}"
        )
    name, unit = match.group("metric"), match.group("suffix")
    value = float(match.group("value"))
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget term {term!r} must be a positive number")
    if unit.startswith("x"):
        ref = unit[1:] or "int8"
        if ref not in REFERENCES:
            raise BudgetError(f"unknown reference {ref!r} in {term!r}; relative budgets use x (int8), xint8 or xfloat")
        return Limit(name, value, ref)
    units = METRICS[name].units
    if unit not in units:
        shown = ", ".join(u or "(none)" for u in units)
        raise BudgetError(f"unknown unit {unit!r} for {name} in {term!r}; use one of {shown}, or x for relative")
    return Limit(name, value * units[unit], None)


@dataclass(frozen=True)
class ResolvedBudget:
    """A budget made absolute for one model on one target; `fits` decides, `achieved` explains."""

    budget: Budget
    #: metric -> bound in base units
    bounds: dict[str, float]
    #: reference name -> its cost
    references: dict[str, SchemeCost] = field(default_factory=dict)

    def fits(self, cost: SchemeCost) -> bool:
        return all(cost.metric(m) <= bound * (1 + 1e-9) for m, bound in self.bounds.items())

    @property
    def additive(self) -> dict[str, float]:
        """The bounds the integer program can hold (peak memory is checked on candidates only)."""
        return {m: b for m, b in self.bounds.items() if METRICS[m].additive}

    def describe(self) -> str:
        """`latency=0.5x (1.23 ms)`: what was asked and what it means here."""
        parts = []
        for limit in self.budget.limits:
            absolute = METRICS[limit.metric].format(self.bounds[limit.metric])
            parts.append(limit.describe() + (f" ({absolute})" if limit.relative else ""))
        return ", ".join(parts)

    def achieved(self, cost: SchemeCost) -> list[str]:
        """One line per bounded metric: the cost reached against the bound, in the budget's units."""
        lines = []
        for limit in self.budget.limits:
            m = METRICS[limit.metric]
            value, bound = cost.metric(limit.metric), self.bounds[limit.metric]
            line = f"{limit.metric}: {m.format(value)} of {m.format(bound)}"
            if limit.reference is not None:
                ref = self.references[limit.reference].metric(limit.metric)
                if ref > 0:
                    line += f" = {value / ref:.3g}x {limit.reference} (budget {limit.value:g}x)"
            lines.append(line)
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.budget.describe(),
            "bounds": {m: {"value": v, "unit": METRICS[m].base_unit} for m, v in self.bounds.items()},
            "references": {name: cost.to_json() for name, cost in self.references.items()},
        }
