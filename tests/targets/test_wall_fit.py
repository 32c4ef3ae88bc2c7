"""Node costs refitted to whole-model wall times: synthetic models with known node costs."""

from __future__ import annotations

import random

import pytest
from mpqc.targets.wall_fit import LOWEST_SHARE, fit_node_costs

TRUE = {f"n{i}": 1e-6 * (1 + i % 5) for i in range(12)}
PER_RUN = 8e-6


def wall(nodes: list[str]) -> float:
    return PER_RUN + sum(TRUE[n] for n in nodes)


def models(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[n for n in TRUE if rng.random() < 0.6] for _ in range(count)]


def error(fit, nodes: list[str]) -> float:
    predicted = fit.intercept + sum(fit.nodes.get(n, 0.0) for n in nodes)
    return abs(predicted - wall(nodes)) / wall(nodes)


def test_the_fit_recovers_what_a_proportionally_scaled_profile_misses():
    # a profiler that adds 2 us to every node, its times then scaled to one whole model
    profiled = {n: t + 2e-6 for n, t in TRUE.items()}
    scale = wall(list(TRUE)) / sum(profiled.values())
    prior = {n: t * scale for n, t in profiled.items()}
    timed = models(24, seed=1)
    fit = fit_node_costs(prior, [(nodes, wall(nodes)) for nodes in timed])
    held_out = models(10, seed=2)
    scaled_errors = [abs(sum(prior[n] for n in m) - wall(m)) / wall(m) for m in held_out]
    fitted_errors = [error(fit, m) for m in held_out]
    assert max(fitted_errors) < 0.05 < max(scaled_errors)
    assert fit.intercept == pytest.approx(PER_RUN, rel=0.5)


def test_costs_stay_near_the_prior_where_the_times_say_nothing():
    prior = {"seen": 2e-6, "unseen": 5e-6}
    fit = fit_node_costs(prior, [(["seen"], 10e-6), (["seen", "seen"], 12e-6)])
    assert set(fit.nodes) == {"seen"}  # only keys that some timed model ran
    assert fit.nodes["seen"] >= LOWEST_SHARE * prior["seen"]


def test_no_cost_falls_below_its_share_of_the_prior():
    prior = {"a": 4e-6, "b": 4e-6}
    fit = fit_node_costs(prior, [(["a", "b"], 4e-6), (["a"], 3.9e-6), (["b"], 4.1e-6)])
    assert min(fit.nodes.values()) >= LOWEST_SHARE * 4e-6 * (1 - 1e-9)
    assert fit.intercept >= 0


def test_the_result_does_not_depend_on_the_order_of_rows_or_nodes():
    prior = dict(TRUE)
    rows = [(nodes, wall(nodes) * (1.02 if i % 3 else 0.97)) for i, nodes in enumerate(models(16, seed=3))]
    first = fit_node_costs(prior, rows)
    shuffled = [(list(reversed(nodes)), w) for nodes, w in reversed(rows)]
    second = fit_node_costs(prior, shuffled)
    assert first.nodes == pytest.approx(second.nodes, rel=1e-9)
    assert first.intercept == pytest.approx(second.intercept, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("rows", [[], [(["a"], 0.0)], [(["a"], -1e-6)]])
def test_no_times_or_a_non_positive_time_is_refused(rows):
    with pytest.raises(ValueError, match="positive wall time"):
        fit_node_costs({"a": 1e-6}, rows)
