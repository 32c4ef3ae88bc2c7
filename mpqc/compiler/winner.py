"""The winner: the best fitting candidate by validation quality (cheaper first on ties).
On a target that measures, a latency budget is confirmed by running the best few with the
budget's reference in the same interleaved run; the first that fits wins."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mpqc.compiler.candidates import Candidate
from mpqc.errors import BudgetError
from mpqc.precision import FLOAT, W8A8
from mpqc.workload import Workload

__all__ = ["rank", "choose_winner"]

_REFERENCES = {"int8": W8A8, "float": FLOAT}


def rank(candidates: Sequence[Candidate], metric: str) -> list[Candidate]:
    """Best validation quality first; on ties the cheaper in `metric`, then the key (deterministic)."""
    return sorted(candidates, key=lambda c: (-c.quality, c.cost.metric(metric), c.key))


def choose_winner(
    workload: Workload, fitting: Sequence[Candidate], say: Callable[[str], None], tries: int = 5
) -> Candidate:
    """The winner among `fitting`, confirmed by measurement when the target measures a latency budget."""
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
