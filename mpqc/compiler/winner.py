"""The winner: the best fitting candidate by validation quality (cheaper first on ties).
On a target that measures, a latency budget is confirmed by running the best few with the
budget's reference in the same interleaved run; the first that fits wins.

Quality-constrained (`max_drop`): the cheapest fitting candidate whose validation quality
is within `max_drop` of float. On a target that measures latency, the cheapest few by
prediction run interleaved with the reference; among those that meet the bound, the ones
measured within the noise of the fastest (its interquartile range, at least 2%) are near
equals, and the cheapest of them by prediction wins: a clearly faster scheme is never
passed over for a prediction error, and timing noise between near equals does not change
the scheme from one run to the next."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mpqc.compiler.candidates import Candidate
from mpqc.errors import BudgetError
from mpqc.precision import FLOAT, W8A8
from mpqc.workload import Workload

__all__ = ["rank", "choose_winner", "within_drop"]

_REFERENCES = {"int8": W8A8, "float": FLOAT}
#: measured latencies within this fraction of the fastest are near equals (max-drop)
NEAR_EQUAL = 0.02


def rank(candidates: Sequence[Candidate], metric: str) -> list[Candidate]:
    """Best validation quality first; on ties the cheaper in `metric`, then the key (deterministic)."""
    return sorted(candidates, key=lambda c: (-c.quality, c.cost.metric(metric), c.key))


def within_drop(candidates: Sequence[Candidate], float_quality: float, max_drop: float) -> list[Candidate]:
    """The candidates whose validation quality is at least float - `max_drop`."""
    return [c for c in candidates if c.quality >= float_quality - max_drop - 1e-12]


def choose_winner(
    workload: Workload,
    fitting: Sequence[Candidate],
    say: Callable[[str], None],
    tries: int = 5,
    max_drop: float | None = None,
    float_quality: float = 1.0,
) -> Candidate:
    """The winner among `fitting`, confirmed by measurement when the target measures a latency budget."""
    if max_drop is not None:
        return _cheapest_within(workload, fitting, say, tries, max_drop, float_quality)
    budget = workload.resolved_budget
    ranked = rank(fitting, budget.budget.metrics[0])
    costs = workload.costs
    latency = next((limit for limit in budget.budget.limits if limit.metric == "latency"), None)
    if latency is None or not costs.measures:
        return ranked[0]
    for candidate in ranked[:tries]:
        if latency.reference is not None:
            reference = workload.uniform(_REFERENCES[latency.reference])
            ref, cand = costs.measure([reference, candidate.scheme])
            bound = latency.value * ref.median_s
            against = f"{latency.reference} {ref.median_s * 1e3:.3f} ms"
        else:
            (cand,) = costs.measure([candidate.scheme])
            bound, against = latency.value, "absolute"
        candidate.measured_latency_s = cand.median_s
        if cand.median_s <= bound:
            say(f"budget check: measured {cand.median_s * 1e3:.3f} ms <= {bound * 1e3:.3f} ms ({against})")
            return candidate
        say(
            f"budget check: {candidate.scheme.summary()} measured {cand.median_s * 1e3:.3f} ms > {bound * 1e3:.3f} ms;"
            " trying the next candidate"
        )
    raise BudgetError(
        f"none of the {min(tries, len(ranked))} best candidates met the latency budget when measured on "
        f"{workload.target.name if workload.target else 'the target'}; loosen the budget"
    )


def _cheapest_within(
    workload: Workload,
    fitting: Sequence[Candidate],
    say: Callable[[str], None],
    tries: int,
    max_drop: float,
    float_quality: float,
) -> Candidate:
    budget = workload.resolved_budget
    metric = budget.budget.metrics[0]
    allowed = within_drop(fitting, float_quality, max_drop)
    if not allowed:
        best = max(c.quality for c in fitting)
        raise BudgetError(
            f"no candidate that fits {budget.describe()} stays within {100 * max_drop:g} points of float "
            f"({100 * float_quality:.2f}); the best reached {100 * best:.2f}: loosen --max-drop or the budget"
        )
    ordered = sorted(allowed, key=lambda c: (c.cost.metric(metric), -c.quality, c.key))
    costs = workload.costs
    if metric != "latency" or not costs.measures or len(ordered) == 1:
        return ordered[0]
    shortlist = ordered[:tries]
    latency = next(limit for limit in budget.budget.limits if limit.metric == "latency")
    reference = workload.uniform(_REFERENCES[latency.reference or "int8"])
    measured = costs.measure([reference, *[c.scheme for c in shortlist]])
    ref, times = measured[0], measured[1:]
    bound = latency.value * ref.median_s if latency.reference is not None else latency.value
    for candidate, time in zip(shortlist, times):
        candidate.measured_latency_s = time.median_s
    inside = [i for i, t in enumerate(times) if t.median_s <= bound]
    fallback = _reference_candidate(allowed, latency.reference, latency.value)
    if not inside and fallback is not None:
        fallback.measured_latency_s = ref.median_s  # it is the reference, measured in the same run
        say(
            f"max-drop: none of the {len(shortlist)} cheapest within {100 * max_drop:g} points ran faster than "
            f"{bound * 1e3:.3f} ms when measured; the reference itself ({fallback.scheme.summary()}) meets the budget"
        )
        return fallback
    if not inside:
        raise BudgetError(
            f"none of the {len(shortlist)} cheapest candidates within {100 * max_drop:g} points met the latency "
            f"budget when measured on {workload.target.name if workload.target else 'the target'}; loosen the budget"
        )
    fastest = min(inside, key=lambda i: times[i].median_s)
    noise = max(NEAR_EQUAL, times[fastest].iqr_s / max(times[fastest].median_s, 1e-12))
    pick = next(i for i in inside if times[i].median_s <= times[fastest].median_s * (1 + noise))
    winner = shortlist[pick]
    say(
        f"max-drop: {len(allowed)} of {len(fitting)} candidates within {100 * max_drop:g} points; the "
        f"{len(shortlist)} cheapest measured with the reference: {winner.scheme.summary()} "
        f"{times[pick].median_s * 1e3:.3f} ms (bound {bound * 1e3:.3f} ms)"
    )
    return winner


def _reference_candidate(allowed: Sequence[Candidate], reference: str | None, value: float) -> Candidate | None:
    """The candidate that is the budget's reference scheme, where the budget is at least 1x
    it: it meets the budget by definition, whatever a measurement's noise says."""
    if reference is None or value < 1.0:
        return None
    precision = _REFERENCES[reference]
    for candidate in allowed:
        if all(p == precision for p in candidate.scheme.layers.values()):
            return candidate
    return None
