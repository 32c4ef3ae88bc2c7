"""QAT policies: which candidates compile spends QAT on.

- `never`: PTQ only.
- `always`: QAT for every candidate that fits the budget (the baseline that finds the best
  winner and pays the most).
- `ptq-rule`: the free rule (a), QAT where float - PTQ quality exceeds the tolerance, for
  the best `top_k` candidates by PTQ quality. No probes.
- `predicted`: a probe-free necessity predictor decides, in rounds, learning from each
  round's runs (see `PredictedPolicy`).
- `predicted-split`: the same rounds with a share per part of the PTQ loss (weights,
  activations), one more PTQ run per candidate (`SplitRecoveryModel`).
- `probed`: the same rounds with the layer-probe oracle (short QAT per layer first).
- `short-qat`: every fitting candidate gets a short QAT run; the best `top_k` by its result
  go on to the full run (two rungs of successive halving; see `ShortQatPolicy`).

A policy gets the fitting candidates (PTQ quality known) and a `train` callable that QATs a
list of candidates (setting `qat`, for a given number of epochs or the configured one); it
sets every candidate's `decision`."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mpqc.compiler.candidates import Candidate
from mpqc.recovery import LossSplit, Prediction, Predictor, SplitRecoveryModel, Z

__all__ = [
    "QatPolicy",
    "PolicyContext",
    "make_policy",
    "NeverPolicy",
    "AlwaysPolicy",
    "PtqRulePolicy",
    "PredictedPolicy",
    "PredictedSplitPolicy",
    "ProbedPolicy",
    "ShortQatPolicy",
    "Train",
]


class Train(Protocol):
    """QATs `batch` for `epochs` (None: the configured epochs). A candidate's `qat` becomes
    the best of its runs (so its model is the best trained one), a shorter run's result is
    also kept as `short_qat`, and its full run goes on from where the shorter one stopped."""

    def __call__(self, batch: Sequence[Candidate], epochs: int | None = None) -> None: ...


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
    #: the necessity predictor (predicted and probed policies)
    predictor: Predictor | SplitRecoveryModel | None = None
    #: the quality QAT is not expected to pass: the float model's plus one standard error of
    #: a 0/1 measure (labelled QAT may end a little above the float model; by distillation,
    #: cosine, it cannot); a best within the tolerance of it ends the rounds
    ceiling: float = 1.0
    #: the configured QAT epochs, and the short run's (short-qat policy)
    epochs: int = 3
    short_epochs: int = 1


class QatPolicy(abc.ABC):
    """Decides, for the candidates that fit, which get QAT; subclasses are chosen by `name`."""

    name: str = ""
    #: whether the policy needs the layer probes before the search
    needs_probes: bool = False
    #: whether the policy needs each candidate's PTQ quality with float weights
    needs_split: bool = False

    @abc.abstractmethod
    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        """Decide and train; returns the number of QAT runs made."""

    def describe_limit(self, max_runs: int) -> str:
        """What `--max-qat-runs` bounds under this policy (for the report)."""
        return f"limit {max_runs}"


class NeverPolicy(QatPolicy):
    """PTQ only: the baseline that spends nothing on training."""

    name = "never"

    def describe_limit(self, max_runs: int) -> str:
        return "no run limit"

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        for c in candidates:
            c.decision = "ptq (policy: never QAT)"
        return 0


class AlwaysPolicy(QatPolicy):
    """QAT for every candidate that fits: the baseline that spends the most."""

    name = "always"

    def describe_limit(self, max_runs: int) -> str:
        return "no run limit"

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
    """QAT in rounds of `round_size` runs, best predicted first. After each round the
    predictor is refitted on the runs just paid for and predictions are redone; a candidate
    goes on only while its prediction is not a sure "ptq" and its optimistic QAT quality
    (the top of its 95% interval, capped at `PolicyContext.ceiling`, about the float
    model's quality) beats the best result by the tolerance. Candidates whose interval
    straddles the tolerance are "uncertain": they are trained only if they could change the
    winner, and their decision says so.

    The predictor is `RecoveryModel` (probe-free: rule (a) with the unrecovered share learned
    from these runs); the `probed` policy uses the layer-probe oracle instead."""

    name = "predicted"

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        predictor = ctx.predictor
        assert predictor is not None
        done = [c for c in candidates if c.qat is not None]
        left = ctx.max_runs - len(done)
        runs = 0
        while True:
            if done:
                _refit(predictor, done, ctx)
            best = max(c.quality for c in candidates)
            pending = [c for c in candidates if c.qat is None]
            for c in pending:
                c.prediction = _predict(predictor, c, ctx)
            if left <= 0:
                break
            eligible = [c for c in pending if _worth_a_run(c.prediction, best, ctx)]
            if not eligible:
                break
            eligible.sort(key=lambda c: (-_point(c), -(c.ptq or 0.0), c.key))
            batch = eligible[: min(ctx.round_size, left)]
            for c in batch:
                p = c.prediction
                assert p is not None
                c.decision = (
                    f"qat{' (N uncertain)' if p.decision == 'uncertain' else ''}: predicted "
                    f"{_interval(p)}, QAT {100 * p.qat_quality:.2f} could beat best {100 * best:.2f} + tolerance"
                )
            ctx.say(f"QAT round: {len(batch)} run(s), best so far {100 * best:.2f}, {predictor.describe()}")
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
            if p.decision == "ptq":
                c.decision = f"ptq: predicted {_interval(p)} <= tolerance"
            elif _optimistic(p, ctx) <= best + ctx.tolerance:
                c.decision = (
                    f"ptq{' (N uncertain)' if p.decision == 'uncertain' else ''}: QAT cannot change the winner "
                    f"(predicted QAT {100 * p.qat_quality:.2f} +{100 * Z * p.sigma:.2f}, best {100 * best:.2f})"
                )
            else:
                c.decision = f"ptq: QAT-run limit reached (predicted {_interval(p)}, {p.decision})"
        ctx.say(f"QAT predictor: {predictor.describe()}")
        return runs


class PredictedSplitPolicy(PredictedPolicy):
    """The predicted policy with `SplitRecoveryModel`: what QAT leaves of a candidate's PTQ
    loss is learned per part (its weights', its activations'), so candidates with the same
    PTQ loss are told apart; each candidate costs one more PTQ run (float weights)."""

    name = "predicted-split"
    needs_split = True


class ProbedPolicy(PredictedPolicy):
    """The predicted policy with the layer-probe oracle (short QAT per layer and precision
    before the search). Kept to measure what the probes buy; they cost most of a compile."""

    name = "probed"
    needs_probes = True


class ShortQatPolicy(QatPolicy):
    """Two rungs of successive halving. Every fitting candidate gets a short QAT run
    (`short_epochs`); the best `top_k` by its result (at most `max_runs`) get the full run.
    Where the best PTQ, or then the best short result, is within the tolerance of the
    ceiling, nothing more is trained (as in `PredictedPolicy`).

    Why it exists, and why it is not the default: over 40 fresh schemes of the kit
    classifier a 1-epoch run ranked what 2-epoch QAT reaches at 0.88, against 0.67 for the
    PTQ order that ptq-rule and predicted use (difference +0.21 [-0.001, +0.47]); in compile
    it returned always-QAT's winner in 9 of 11 configurations against `predicted`'s 8, at
    2-7 s more a compile and 1.5x the time where the PTQ order is already right (OCR), the
    two missing on different models (benchmarks/RESULTS.md, "QAT cost").
    With one seed a full run's first epochs are the short run step for step, so the full run
    goes on from where the short one stopped (`TrainingState`) and only adds to it; a
    short-trained model is a real QAT model and may win."""

    name = "short-qat"

    def describe_limit(self, max_runs: int) -> str:
        return f"every candidate short, then at most {max_runs} full run(s)"

    def run(self, candidates: list[Candidate], ctx: PolicyContext) -> int:
        short = min(ctx.short_epochs, ctx.epochs)
        ranked = sorted(candidates, key=lambda c: (-(c.ptq or 0.0), c.key))
        if ranked and (ranked[0].ptq or 0.0) >= ctx.ceiling - ctx.tolerance:
            for c in ranked:
                c.decision = (
                    f"ptq: the best PTQ {100 * (ranked[0].ptq or 0.0):.2f} is within the tolerance of the ceiling"
                )
            return 0
        if len(ranked) <= min(ctx.top_k, ctx.max_runs):
            short = ctx.epochs  # every candidate would go on: the short rung could not choose
        ctx.say(f"QAT, short rung: {len(ranked)} run(s) of {short} epoch(s), every fitting candidate")
        ctx.train(ranked, short)
        runs = len(ranked)
        by_short = sorted(ranked, key=lambda c: (-c.quality, c.key))
        best = by_short[0].quality if by_short else 0.0
        reached = best >= ctx.ceiling - ctx.tolerance
        one_rung = short >= ctx.epochs  # the short run was the full one
        limit = 0 if one_rung or reached else min(ctx.top_k, ctx.max_runs)
        chosen = by_short[:limit]
        for rank, c in enumerate(by_short, 1):
            c.decision = f"qat: {short}-epoch QAT {100 * c.quality:.2f}, rank {rank}"
            if one_rung:
                continue
            if rank <= limit:
                c.decision += f", top {limit} go on to {ctx.epochs} epochs"
            elif reached:
                c.decision += f"; no full runs: best {100 * best:.2f} is within the tolerance of the ceiling"
            else:
                c.decision += f", not in the top {limit}"
        if chosen:
            ctx.say(f"QAT, full rung: {len(chosen)} run(s) of {ctx.epochs} epochs, the best by short QAT")
            ctx.train(chosen)
        return runs + len(chosen)


def _split(c: Candidate, ctx: PolicyContext) -> LossSplit:
    if c.activations_ptq is None:
        raise ValueError(f"candidate {c.key} has no activations-only PTQ quality (the policy needs_split)")
    return LossSplit.of(ctx.float_quality, c.ptq or 0.0, c.activations_ptq)


def _refit(predictor: Predictor | SplitRecoveryModel, done: Sequence[Candidate], ctx: PolicyContext) -> None:
    if isinstance(predictor, SplitRecoveryModel):
        predictor.refit([(c.ptq or 0.0, c.qat or 0.0, _split(c, ctx)) for c in done])
    else:
        predictor.refit([(c.ptq or 0.0, c.qat or 0.0) for c in done])


def _predict(predictor: Predictor | SplitRecoveryModel, c: Candidate, ctx: PolicyContext) -> Prediction:
    if isinstance(predictor, SplitRecoveryModel):
        return predictor.predict(c.ptq or 0.0, _split(c, ctx))
    return predictor.predict(c.scheme, c.ptq or 0.0)


def _point(c: Candidate) -> float:
    return c.prediction.qat_quality if c.prediction is not None else 0.0


def _optimistic(prediction: Prediction, ctx: PolicyContext) -> float:
    return min(prediction.qat_quality + Z * prediction.sigma, ctx.ceiling)


def _worth_a_run(prediction: Prediction | None, best: float, ctx: PolicyContext) -> bool:
    return (
        prediction is not None and prediction.decision != "ptq" and _optimistic(prediction, ctx) > best + ctx.tolerance
    )


def _interval(p: Prediction) -> str:
    return f"N {100 * p.necessity:.2f} [{100 * p.low:.2f}, {100 * p.high:.2f}] points"


_POLICIES: dict[str, type[QatPolicy]] = {
    p.name: p
    for p in (
        NeverPolicy,
        AlwaysPolicy,
        PtqRulePolicy,
        PredictedPolicy,
        PredictedSplitPolicy,
        ProbedPolicy,
        ShortQatPolicy,
    )
}


def make_policy(name: str) -> QatPolicy:
    """The policy named `name` (one of `mpqc.compiler.options.POLICIES`)."""
    return _POLICIES[name]()
