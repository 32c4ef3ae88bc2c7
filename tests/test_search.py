from __future__ import annotations

import itertools

from mpqc.precision import Precision
from mpqc.search import LayerOptions, cheapest, pareto_candidates, solve

P = tuple(Precision.parse(label) for label in ("w8a8", "w4a8", "w2a8"))


def _options() -> list[LayerOptions]:
    return [
        LayerOptions("a", P, (0.0, 0.01, 0.30), {"latency": (4.0, 2.0, 1.0)}),
        LayerOptions("b", P, (0.0, 0.05, 0.06), {"latency": (4.0, 2.0, 1.0)}),
        LayerOptions("c", P, (0.0, 0.00, 0.02), {"latency": (2.0, 1.0, 0.5)}),
    ]


def _brute(options, bound):
    best = None
    for picks in itertools.product(range(3), repeat=len(options)):
        cost = sum(o.costs["latency"][i] for o, i in zip(options, picks))
        loss = sum(o.loss[i] for o, i in zip(options, picks))
        if cost <= bound and (best is None or loss < best[0] - 1e-12):
            best = (loss, picks)
    return best


def test_solve_matches_brute_force_at_every_budget():
    options = _options()
    for bound in (2.5, 3.0, 4.0, 5.5, 7.0, 10.0):
        scheme = solve(options, {"latency": bound})
        expected = _brute(options, bound)
        assert (scheme is None) == (expected is None)
        if scheme is not None:
            loss = sum(o.loss[o.precisions.index(scheme[o.layer])] for o in options)
            assert abs(loss - expected[0]) < 1e-9


def test_infeasible_returns_none_and_cheapest_is_the_sum_of_minima():
    options = _options()
    assert cheapest(options, "latency") == 2.5
    assert solve(options, {"latency": 2.0}) is None


def test_pareto_candidates_are_distinct_and_within_budget():
    options = _options()
    found = pareto_candidates(options, {"latency": 7.0}, {"a": [o.loss for o in options]}, levels=5)
    schemes = [s for s, _, _ in found]
    assert len(set(schemes)) == len(schemes) >= 2
    for scheme in schemes:
        cost = sum(o.costs["latency"][o.precisions.index(scheme[o.layer])] for o in options)
        assert cost <= 7.0 + 1e-9
    assert all(isinstance(p, Precision) for s in schemes for p in s.layers.values())
