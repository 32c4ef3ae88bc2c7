"""Node costs refitted to whole-model wall times.

ONNX Runtime's profiler records whole microseconds per node and adds its own overhead to
each, so on a model of a few dozen microseconds the profiled node times are a blurred,
inflated picture (their sum is 1.1-3x the wall time, unevenly so between variants), and a
sum of scaled profiled times misses mixed schemes by up to a quarter. Fitting the node
costs to whole-model wall times (the variants', and on small models those of a few mixed
schemes timed next to them), held near the profiled costs (ridge towards them), removes
that: the fitted costs add up to what the runtime really takes, including a fixed per-run
cost no node owns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import lsq_linear

__all__ = ["WallFit", "fit_node_costs"]

#: weight of the prior: a node's squared relative deviation from its profiled cost counts
#: this much against the squared relative error of one whole-model time (tried on the zoo's
#: digits CNN, ResNet-8 and transformer against held-out random schemes: 1e-3 and 1e-2 were
#: within noise of each other, 1e-4 let the transformer's worst error reach 9%)
RIDGE = 1e-3
#: a profiled cost below this (seconds) is held to this absolute scale instead (the
#: profiler's resolution is one microsecond)
FLOOR_S = 0.5e-6
#: no fitted cost goes below this share of its prior: a layer or node that ran for the
#: profiler does not cost nothing, however the few wall times fall
LOWEST_SHARE = 0.25


class WallFit:
    """Fitted seconds per node key, and the per-run seconds no node owns."""

    def __init__(self, nodes: dict[str, float], intercept: float) -> None:
        self.nodes, self.intercept = nodes, intercept


def fit_node_costs(
    prior: Mapping[str, float], rows: Sequence[tuple[Sequence[str], float]], ridge: float = RIDGE
) -> WallFit:
    """Costs for the node keys of `rows` (each: the node keys one model executes, and its
    measured wall seconds), held near `prior` (keys missing there are held near zero) and
    at least LOWEST_SHARE of it; relative errors, so fast and slow models weigh alike."""
    keys = sorted({key for nodes, _ in rows for key in nodes})
    index = {key: i for i, key in enumerate(keys)}
    design = np.zeros((len(rows), len(keys) + 1))
    walls = np.array([wall for _, wall in rows], dtype=float)
    if len(rows) == 0 or np.any(walls <= 0):
        raise ValueError("every row needs a positive wall time")
    for r, (nodes, _) in enumerate(rows):
        design[r, -1] = 1.0
        for key in nodes:
            design[r, index[key]] += 1.0
    design /= walls[:, None]
    target = np.ones(len(rows))
    start = np.array([prior.get(key, 0.0) for key in keys])
    scale = np.maximum(start, FLOOR_S)
    penalty = np.zeros((len(keys), len(keys) + 1))
    penalty[np.arange(len(keys)), np.arange(len(keys))] = np.sqrt(ridge) / scale
    system = np.vstack([design, penalty])
    rhs = np.concatenate([target, np.sqrt(ridge) * start / scale])
    lowest = np.append(LOWEST_SHARE * start, 0.0)
    solution = lsq_linear(system, rhs, bounds=(lowest, np.inf), method="bvls").x
    return WallFit({key: float(solution[index[key]]) for key in keys}, float(solution[-1]))
