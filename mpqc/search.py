"""The exact optimiser: per-layer precision choices under a budget,
on additive per-layer proxies, solved as a 0/1 integer program (scipy's HiGHS `milp`).

Each layer l takes one precision p; x[l,p] in {0,1}, sum_p x[l,p] = 1. Costs c_m[l,p] for
each budgeted metric m are summed and bounded; the objective is a predicted accuracy loss
per (l, p). Solving at a ladder of budget levels and with two objectives (PTQ sensitivity,
and the loss QAT cannot recover) gives a Pareto set of distinct candidate schemes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from mpqc.precision import Precision
from mpqc.scheme import Scheme

__all__ = ["LayerOptions", "solve", "pareto_candidates"]


@dataclass(frozen=True)
class LayerOptions:
    """For one layer: the allowed precisions, and per precision its loss and its costs."""

    layer: str
    precisions: tuple[Precision, ...]
    loss: tuple[float, ...]
    costs: dict[str, tuple[float, ...]]


def solve(
    options: Sequence[LayerOptions], limits: dict[str, float], loss: Sequence[Sequence[float]] | None = None
) -> Scheme | None:
    """The scheme of least total loss within the limits, or None if none fits."""
    sizes = [len(o.precisions) for o in options]
    n = sum(sizes)
    objective = np.concatenate(
        [np.asarray(loss[i] if loss is not None else o.loss, float) for i, o in enumerate(options)]
    )
    objective = objective + 1e-9 * np.arange(n)  # deterministic tie-break: earlier options first
    rows: list[np.ndarray] = []
    lower: list[float] = []
    upper: list[float] = []
    start = 0
    for size in sizes:
        row = np.zeros(n)
        row[start : start + size] = 1
        rows.append(row)
        lower.append(1)
        upper.append(1)
        start += size
    for metric, bound in limits.items():
        rows.append(np.concatenate([np.asarray(o.costs[metric], float) for o in options]))
        lower.append(-np.inf)
        upper.append(bound)
    result = milp(
        objective,
        constraints=LinearConstraint(np.array(rows), lower, upper),
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
    )
    if not result.success or result.x is None:
        return None
    chosen: dict[str, Precision] = {}
    start = 0
    for option, size in zip(options, sizes):
        pick = int(np.argmax(result.x[start : start + size]))
        chosen[option.layer] = option.precisions[pick]
        start += size
    return Scheme(chosen)


def cheapest(options: Sequence[LayerOptions], metric: str) -> float:
    return float(sum(min(o.costs[metric]) for o in options))


def pareto_candidates(
    options: Sequence[LayerOptions],
    limits: dict[str, float],
    objectives: Mapping[str, Sequence[Sequence[float]]],
    levels: int = 6,
    span: float = 0.5,
) -> list[tuple[Scheme, str, float]]:
    """Distinct schemes: for each objective, the optimum at the budget and at `levels`
    tighter fractions of it, evenly down to `span` of the way from the budget to the cheapest
    reachable (1.0: all the way). Returns (scheme, objective, budget fraction), in a
    deterministic order."""
    found: list[tuple[Scheme, str, float]] = []
    seen: set[Scheme] = set()
    for name, loss in objectives.items():
        for k in range(levels):
            fraction = 1.0 - span * k / max(levels - 1, 1)
            scaled = {}
            for metric, bound in limits.items():
                floor = cheapest(options, metric)
                scaled[metric] = floor + (bound - floor) * fraction
            scheme = solve(options, scaled, loss)
            if scheme is not None and scheme not in seen:
                seen.add(scheme)
                found.append((scheme, name, fraction))
    return found
