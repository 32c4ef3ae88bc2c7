"""QAT policies: which candidates compile spends QAT on.

- `never`: PTQ only.
- `always`: QAT for every candidate that fits the budget (the baseline that finds the best
  winner and pays the most).
- `ptq-rule`: the free rule (a), QAT where float - PTQ quality exceeds the tolerance, for
  the best `top_k` candidates by PTQ quality. No probes.
- `predicted`: the necessity predictor decides, in rounds (see `PredictedPolicy`).

A policy gets the fitting candidates (PTQ quality known) and a `train` callable that QATs a
list of candidates (setting `qat`); it sets every candidate's `decision`."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mpqc.compiler.candidates import Candidate
from mpqc.necessity import Oracle, Prediction

__all__ = [
    "QatPolicy",
    "PolicyContext",
    "make_policy",
    "NeverPolicy",
    "AlwaysPolicy",
    "PtqRulePolicy",
    "PredictedPolicy",
]

Train = Callable[[Sequence[Candidate]], None]


@dataclass
class PolicyContext:
    """What a policy may use: the float quality, the tolerance, the run limit, and `train`."""

    float_quality: float
    tolerance: float
    max_runs: int
    round_size: int
    top_k: int
    train: Train
    say: Callable[[str], None]
    #: the necessity predictor (predicted policy only)
    oracle: Oracle | None = None


class QatPolicy(abc.ABC):
    """Decides, for the candidates that fit, which get QAT; subclasses are chosen by `name`."""

    name: str = ""
    #: whether the policy needs the layer probes before the search
    needs_probes: bool = False

    @abc.abstractmethod
    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        """Decide and train; returns the number of QAT runs made."""


class NeverPolicy(QatPolicy):
    """PTQ only: the baseline that spends nothing on training."""

    name = "never"

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        for c in candidates:
            c.decision = "ptq (policy: never QAT)"
        return 0


class AlwaysPolicy(QatPolicy):
    """QAT for every candidate that fits: the baseline that spends the most."""

    name = "always"

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        ranked = sorted(candidates, key=lambda c: (-(c.ptq or 0.0), c.key))
        for c in ranked:
            c.decision = "qat (policy: always QAT)"
        ctx.say(f"QAT: {len(ranked)} run(s), every fitting candidate (policy always)")
        ctx.train(ranked)
        return len(ranked)


class PtqRulePolicy(QatPolicy):
    """Rule (a): N = float - PTQ. QAT the best `top_k` (by PTQ) whose N exceeds the tolerance."""

    name = "ptq-rule"

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        ranked = sorted(candidates, key=lambda c: (-(c.ptq or 0.0), c.key))
        chosen: list[Candidate] = []
        limit = min(ctx.top_k, ctx.max_runs)
        for c in ranked:
            gap = ctx.float_quality - (c.ptq or 0.0)
            if gap <= ctx.tolerance:
                c.decision = f"ptq: float - PTQ = {100 * gap:.2f} points <= tolerance"
            elif len(chosen) < limit:
                chosen.append(c)
                c.decision = f"qat: float - PTQ = {100 * gap:.2f} points, top {limit} by PTQ"
            else:
                c.decision = f"ptq: not in the top {limit} by PTQ"
        if chosen:
            ctx.say(f"QAT: {len(chosen)} run(s) chosen by the rule float - PTQ > tolerance")
            ctx.train(chosen)
        return len(chosen)


class PredictedPolicy(QatPolicy):
    """QAT in rounds of `round_size` runs, best predicted first. After each round the oracle
    refits the unrecovered fraction from the runs just paid for, predictions are redone,
    and only candidates still predicted (optimistically: + one sigma) to beat the best
    result by the tolerance go on."""

    name = "predicted"
    needs_probes = True

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        oracle = ctx.oracle
        assert oracle is not None
        done = [c for c in candidates if c.qat is not None]
        left = ctx.max_runs - len(done)
        runs = 0
        while True:
            if done:
                oracle.refit_kappa([(c.ptq or 0.0, c.qat or 0.0) for c in done])
            best = max(c.quality for c in candidates)
            pending = [c for c in candidates if c.qat is None]
            for c in pending:
                c.prediction = oracle.predict(c.scheme, c.ptq or 0.0)
            if left <= 0:
                break
            eligible = [
                c
                for c in pending
                if c.prediction is not None
                and c.prediction.needs_qat
                and _optimistic(c.prediction) > best + ctx.tolerance
            ]
            if not eligible:
                break
            eligible.sort(key=lambda c: (-_optimistic(c.prediction) if c.prediction else 0.0, c.key))
            batch = eligible[: min(ctx.round_size, left)]
            for c in batch:
                assert c.prediction is not None
                c.decision = f"qat: predicted {100 * c.prediction.qat_quality:.2f} > best {100 * best:.2f} + tolerance"
            ctx.say(f"QAT round: {len(batch)} run(s), best so far {100 * best:.2f}, kappa {oracle.kappa:.2f}")
            ctx.train(batch)
            done.extend(batch)
            runs += len(batch)
            left -= len(batch)
        best = max(c.quality for c in candidates)
        for c in candidates:
            if c.qat is not None:
                continue
            p = c.prediction
            assert p is not None
            if not p.needs_qat:
                c.decision = f"ptq: predicted N {100 * p.necessity:.2f} points <= tolerance"
            elif _optimistic(p) <= best + ctx.tolerance:
                c.decision = (
                    f"ptq: QAT cannot change the winner (predicted {100 * p.qat_quality:.2f} +{100 * p.sigma:.2f}, "
                    f"best {100 * best:.2f})"
                )
            else:
                c.decision = "ptq: QAT-run limit reached"
        return runs


def _optimistic(prediction: Prediction) -> float:
    return prediction.qat_quality + prediction.sigma


_POLICIES: dict[str, type[QatPolicy]] = {p.name: p for p in (NeverPolicy, AlwaysPolicy, PtqRulePolicy, PredictedPolicy)}


def make_policy(name: str) -> QatPolicy:
    """The policy named `name` (one of `mpqc.compiler.options.POLICIES`)."""
    return _POLICIES[name]()
