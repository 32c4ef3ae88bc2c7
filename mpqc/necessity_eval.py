"""Judging necessity predictors against measured QAT over several seeds.

Ground truth for a held-out scheme is its QAT quality averaged over seeds, minus its PTQ
quality; its label (QAT needed or not) is the majority of the seeds' own decisions, and
the seeds' spread is the noise any decision has to live with. Every predictor is scored
the same way (Spearman and mean absolute error of predicted N, decision accuracy), and
each is compared with the free rule "N = float - PTQ" by a bootstrap over schemes, so a
claimed win comes with the interval of the difference."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpqc.recovery import LossSplit, Prediction, RecoveryModel, SplitRecoveryModel

__all__ = [
    "SchemeRecord",
    "compare_predictors",
    "seed_ceiling",
    "qat_seed_ceiling",
    "half_agreement",
    "REFERENCE",
    "QAT_REFERENCE",
    "spearman",
    "learned_share",
    "split_share",
    "paid_count",
    "weight_part",
    "interval_scores",
]

#: the predictor every other one is compared with: the free rule N = float - PTQ
REFERENCE = "rule_a"
#: what every predictor's ranking of the QAT quality itself (PTQ + predicted N) is compared
#: with: the PTQ order, which is how ptq-rule (and any one-share model) picks candidates
QAT_REFERENCE = "ptq_order"


@dataclass(frozen=True)
class SchemeRecord:
    """One held-out scheme: what was measured (QAT once per seed) and what each predictor said."""

    scheme: dict[str, str]
    float_quality: float
    ptq: float
    qat: tuple[float, ...]
    #: predictor name -> predicted N
    predicted: dict[str, float]
    #: the PTQ loss split into weights and activations, where measured
    split: LossSplit | None = None

    @property
    def necessity(self) -> float:
        """Measured N: QAT averaged over the seeds, minus PTQ."""
        return float(np.mean(self.qat)) - self.ptq

    @property
    def spread(self) -> float:
        """Standard deviation of N over the seeds (0 with one seed)."""
        return float(np.std(self.qat, ddof=1)) if len(self.qat) > 1 else 0.0

    def needs_qat(self, tolerance: float) -> bool:
        """The seeds' majority decision (a tie: the mean's)."""
        votes = sum(q - self.ptq > tolerance for q in self.qat)
        if 2 * votes == len(self.qat):
            return self.necessity > tolerance
        return 2 * votes > len(self.qat)

    def unanimous(self, tolerance: float) -> bool:
        return len({q - self.ptq > tolerance for q in self.qat}) == 1

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "float": self.float_quality,
            "ptq": self.ptq,
            "qat": list(self.qat),
            "predicted_n": self.predicted.get("predictor"),
            **{name: value for name, value in self.predicted.items() if name != "predictor"},
            **(
                {"ptq_loss_weights": self.split.weights, "ptq_loss_activations": self.split.activations}
                if self.split is not None
                else {}
            ),
        }


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (nan when either side is constant)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    # Pearson's r of the average ranks, as scipy's spearmanr, without its overhead, which
    # the bootstraps pay tens of thousands of times
    return float(np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1])


def _average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (scipy's rankdata, method "average")."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=float), return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return (first + (counts + 1) / 2.0)[inverse]


def _scores(records: Sequence[SchemeRecord], name: str, tolerance: float) -> dict[str, float]:
    predicted = [r.predicted[name] for r in records]
    truth = [r.necessity for r in records]
    return {
        "spearman": spearman(predicted, truth),
        "mae": float(np.mean([abs(p - t) for p, t in zip(predicted, truth)])),
        "decision_accuracy": float(
            np.mean([(p > tolerance) == r.needs_qat(tolerance) for p, r in zip(predicted, records)])
        ),
    }


def _qat_ranks(records: Sequence[SchemeRecord], name: str) -> float:
    """Spearman of the QAT quality a predictor implies (PTQ + its N) with the seed-averaged
    QAT quality: what decides which candidate a compile keeps. `QAT_REFERENCE` is PTQ alone."""
    # rounded: PTQ + (float - PTQ) is the float quality up to the last bits, not a ranking
    implied = [round(r.ptq if name == QAT_REFERENCE else r.ptq + r.predicted[name], 9) for r in records]
    return spearman(implied, [float(np.mean(r.qat)) for r in records])


def seed_ceiling(records: Sequence[SchemeRecord], of_qat: bool = False) -> float:
    """How well one seed's N ranks like the mean of the other seeds' (averaged over which
    seed is left out): the Spearman a perfect predictor of one QAT run could expect. A
    predictor of the seed mean can rank above it (`half_agreement` says how far). nan with
    one seed. With `of_qat`, the same for the QAT quality itself (`qat_seed_ceiling`)."""
    seeds = _seed_count(records)
    if seeds < 2:
        return float("nan")
    pairs = [((k,), tuple(j for j in range(seeds) if j != k)) for k in range(seeds)]
    return _agreement(records, pairs, of_qat)


def qat_seed_ceiling(records: Sequence[SchemeRecord]) -> float:
    """`seed_ceiling` of the QAT quality rather than of N: lower, since N's spread over
    schemes includes the PTQ loss, which every seed shares."""
    return seed_ceiling(records, of_qat=True)


def half_agreement(records: Sequence[SchemeRecord], of_qat: bool = False, splits: int = 200) -> float:
    """How well the mean over one half of the seeds ranks like the mean over the other half
    (disjoint halves of `seeds // 2`, averaged over up to `splits` of them): how reliable the
    truth itself is. `seed_ceiling` scores a predictor of one run; a predictor of the mean
    can rank above it, and this says how much room a many-seed truth leaves (a predictor at
    this agreement ranks as well as half the seeds do). nan below 2 seeds."""
    seeds = _seed_count(records)
    half = seeds // 2
    if half < 1:
        return float("nan")
    return _agreement(records, _half_splits(seeds, half, splits), of_qat)


def _seed_count(records: Sequence[SchemeRecord]) -> int:
    """The seeds every record has (the fewest of any)."""
    return min((len(r.qat) for r in records), default=0)


def _agreement(
    records: Sequence[SchemeRecord], pairs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]], of_qat: bool
) -> float:
    """Mean Spearman, over the pairs of seed groups, of one group's mean N (or QAT quality
    with `of_qat`) against the other's; nan where none is defined."""
    minus = [0.0 if of_qat else r.ptq for r in records]
    values = []
    for a, b in pairs:
        first = [float(np.mean([r.qat[k] for k in a])) - m for r, m in zip(records, minus)]
        second = [float(np.mean([r.qat[k] for k in b])) - m for r, m in zip(records, minus)]
        values.append(spearman(first, second))
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _half_splits(seeds: int, half: int, most: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Disjoint pairs of `half` seeds each, every one of them where there are at most `most`
    (up to 10 seeds), else `most` drawn with a fixed seed (the same answer every time)."""
    if math.comb(seeds, half) * math.comb(seeds - half, half) // 2 <= most:
        return [
            (a, b)
            for a in itertools.combinations(range(seeds), half)
            for b in itertools.combinations([k for k in range(seeds) if k not in a], half)
            if a < b
        ]
    rng = random.Random(0)
    pairs = []
    for _ in range(most):
        order = rng.sample(range(seeds), 2 * half)
        pairs.append((tuple(sorted(order[:half])), tuple(sorted(order[half:]))))
    return pairs


def _interval(values: list[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [float("nan"), float("nan")]
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]


def compare_predictors(
    records: Sequence[SchemeRecord], tolerance: float, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Scores of every predictor, and for each against `REFERENCE` the differences (Spearman:
    it minus the rule; absolute error: the rule's minus its, so positive is better for both;
    decision accuracy: it minus the rule) with bootstrap 95% intervals over schemes.
    `qat_ranking` scores how each ranks the QAT quality itself against the PTQ order
    (`QAT_REFERENCE`): rule (a) implies the float quality for every scheme, so it has none."""
    names = sorted({name for r in records for name in r.predicted})
    scores = {name: _scores(records, name, tolerance) for name in names}
    rng = random.Random(seed)
    samples = [[rng.randrange(len(records)) for _ in records] for _ in range(resamples)]
    picks = [[records[i] for i in sample] for sample in samples]
    differences: dict[str, Any] = {}
    qat_ranking = {name: _qat_ranks(records, name) for name in [QAT_REFERENCE, *names]}
    qat_differences: dict[str, Any] = {}
    reference_draws = [_qat_ranks(picked, QAT_REFERENCE) for picked in picks]
    for name in names:
        if not math.isfinite(qat_ranking[name]):
            continue
        draws_qat = [_qat_ranks(picked, name) - reference for picked, reference in zip(picks, reference_draws)]
        interval = _interval(draws_qat)
        qat_differences[name] = {
            "value": qat_ranking[name] - qat_ranking[QAT_REFERENCE],
            "ci95": interval,
            "better": interval[0] > 0,
        }
    for name in names:
        if name == REFERENCE or REFERENCE not in names:
            continue
        draws: dict[str, list[float]] = {"spearman": [], "mae": [], "decision_accuracy": []}
        for picked in picks:
            ours, theirs = _scores(picked, name, tolerance), _scores(picked, REFERENCE, tolerance)
            draws["spearman"].append(ours["spearman"] - theirs["spearman"])
            draws["mae"].append(theirs["mae"] - ours["mae"])
            draws["decision_accuracy"].append(ours["decision_accuracy"] - theirs["decision_accuracy"])
        point = {
            "spearman": scores[name]["spearman"] - scores[REFERENCE]["spearman"],
            "mae": scores[REFERENCE]["mae"] - scores[name]["mae"],
            "decision_accuracy": scores[name]["decision_accuracy"] - scores[REFERENCE]["decision_accuracy"],
        }
        differences[name] = {
            key: {"value": point[key], "ci95": _interval(draws[key]), "better": _interval(draws[key])[0] > 0}
            for key in point
        }
    spreads = [r.spread for r in records]
    seeds = _seed_count(records)
    return {
        "seed_ceiling": seed_ceiling(records),
        "half_agreement": half_agreement(records),
        "schemes": len(records),
        "seeds": seeds,
        "tolerance": tolerance,
        "scores": scores,
        "against": REFERENCE,
        "differences": differences,
        "seed_noise": float(np.mean(spreads)) if spreads else 0.0,
        "split_decisions": sum(not r.unanimous(tolerance) for r in records),
        "resamples": resamples,
        "qat_ranking": {
            "ceiling": qat_seed_ceiling(records),
            "half_agreement": half_agreement(records, of_qat=True),
            "seeds": seeds,
            "against": QAT_REFERENCE,
            # None where the implied QAT quality is the same for every scheme (rule (a))
            "spearman": {name: value if math.isfinite(value) else None for name, value in qat_ranking.items()},
            "differences": qat_differences,
        },
    }


def paid_count(schemes: int) -> int:
    """How many held-out schemes' first-seed runs the fitted predictors learn from: a
    quarter, at least 2 (what a search's first rounds pay for)."""
    return max(2, schemes // 4)


def weight_part(split: LossSplit) -> float:
    """The fixed weight-part rule, nothing fitted: QAT wins back what the weights cost and
    none of what the activations cost, so N = PTQ at float weights - PTQ (refuted as a
    ranking on fresh kit schemes, RESULTS.md; kept as a baseline)."""
    return max(0.0, split.weights)


def split_share(
    records: Sequence[SchemeRecord], tolerance: float, noise: float = 0.0, paid: int | None = None
) -> list[Prediction]:
    """`learned_share` with a share for each part of the PTQ loss (`SplitRecoveryModel`):
    fitted on the first `paid` schemes' first-seed runs, predicting every scheme. Needs
    every record's `split`."""
    paid = paid_count(len(records)) if paid is None else paid
    if not records:
        return []
    splits = [r.split for r in records if r.split is not None]
    if len(splits) != len(records):
        raise ValueError("split_share needs the PTQ loss split of every scheme")
    model = SplitRecoveryModel(records[0].float_quality, tolerance, noise)
    model.refit([(r.ptq, r.qat[0], s) for r, s in zip(records[:paid], splits)])
    return [model.predict(r.ptq, s) for r, s in zip(records, splits)]


def learned_share(
    records: Sequence[SchemeRecord], tolerance: float, noise: float = 0.0, paid: int | None = None
) -> list[Prediction]:
    """The probe-free predictor as a compile uses it: one `RecoveryModel` fitted on the
    first `paid` schemes' first-seed QAT runs (default a quarter, at least 2: the runs a
    search has paid for in its first rounds) predicts every scheme. One share for all keeps
    rule (a)'s ranking exactly; fitting it per scheme (leave-one-out) would rank by the
    noise of the fits instead, which no compile does. The paid schemes' first seed is one
    third of their truth (with 3 seeds): say so when quoting their error."""
    paid = paid_count(len(records)) if paid is None else paid
    if not records:
        return []
    model = RecoveryModel(records[0].float_quality, tolerance, noise)
    model.refit([(r.ptq, r.qat[0]) for r in records[:paid]])
    return [model.predict(None, r.ptq) for r in records]


def interval_scores(
    records: Sequence[SchemeRecord], predictions: Sequence[Prediction], tolerance: float
) -> dict[str, Any]:
    """How a noise-aware predictor's intervals and three-way decisions held up: how often
    the seed-averaged N fell inside the 95% interval, how many decisions were "uncertain",
    and the accuracy of the sure ones against the seeds' majority."""
    sure = [(p, r) for p, r in zip(predictions, records) if p.decision != "uncertain"]
    return {
        "coverage": float(np.mean([p.low <= r.necessity <= p.high for p, r in zip(predictions, records)])),
        "uncertain": len(records) - len(sure),
        "sure_accuracy": float(np.mean([(p.decision == "qat") == r.needs_qat(tolerance) for p, r in sure]))
        if sure
        else float("nan"),
        "uncertain_where_seeds_split": sum(
            p.decision == "uncertain" and not r.unanimous(tolerance) for p, r in zip(predictions, records)
        ),
    }
