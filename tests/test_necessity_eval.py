"""Judging necessity predictors: seed-averaged truth, majority labels, the seed ceiling and
bootstrap intervals that say "better" only when the whole interval is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpqc.necessity_eval import (
    QAT_REFERENCE,
    REFERENCE,
    SchemeRecord,
    compare_predictors,
    half_agreement,
    interval_scores,
    learned_share,
    qat_seed_ceiling,
    seed_ceiling,
    spearman,
)


def _records(count: int = 24, seed: int = 0) -> list[SchemeRecord]:
    """Schemes whose true N is known; rule_a overestimates where QAT cannot recover."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        ptq = 0.98 - 0.02 * i
        lost = 0.98 - ptq
        true_n = lost * (0.5 if i % 3 == 0 else 1.0)
        qat = tuple(float(ptq + true_n + rng.normal(0, 0.002)) for _ in range(3))
        guesses = {REFERENCE: lost, "predictor": true_n, "noise": float(rng.uniform(0, 0.3))}
        records.append(SchemeRecord({"a": "w4a8"}, 0.98, ptq, qat, guesses))
    return records


def test_the_truth_is_the_seed_mean_and_the_label_the_seed_majority():
    record = SchemeRecord({"a": "w2a8"}, 0.9, 0.80, (0.82, 0.805, 0.83), {})
    assert record.necessity == pytest.approx(np.mean([0.82, 0.805, 0.83]) - 0.80)
    assert record.needs_qat(0.01) and not record.unanimous(0.01)  # 2 of 3 seeds gain > 1 point
    assert not record.needs_qat(0.025)
    tie = SchemeRecord({}, 0.9, 0.80, (0.82, 0.80), {})
    assert tie.needs_qat(0.009) == (tie.necessity > 0.009)
    data = SchemeRecord({"a": "w2a8"}, 0.9, 0.8, (0.85,), {"predictor": 0.04, REFERENCE: 0.1}).to_json()
    assert data == {
        "scheme": {"a": "w2a8"},
        "float": 0.9,
        "ptq": 0.8,
        "qat": [0.85],
        "predicted_n": 0.04,
        REFERENCE: 0.1,
    }


def test_a_better_predictor_wins_with_an_interval_above_zero_and_noise_does_not():
    result = compare_predictors(_records(), tolerance=0.01, resamples=500)
    assert result["scores"]["predictor"]["spearman"] > 0.99 and result["scores"]["predictor"]["mae"] < 0.005
    better = result["differences"]["predictor"]
    assert better["mae"]["better"] and better["mae"]["ci95"][0] > 0
    worse = result["differences"]["noise"]
    assert not worse["spearman"]["better"] and worse["spearman"]["value"] < 0
    assert result["seeds"] == 3 and result["split_decisions"] == 0 and result["seed_noise"] > 0


def test_the_same_records_and_seed_give_the_same_intervals():
    a = compare_predictors(_records(), tolerance=0.01, resamples=200, seed=5)
    b = compare_predictors(_records(), tolerance=0.01, resamples=200, seed=5)
    assert a == b


def test_the_qat_quality_ranking_is_scored_against_the_ptq_order_and_rule_a_has_none():
    """In `_records` every third scheme keeps half its loss after QAT, so the PTQ order
    misranks what QAT reaches; the predictor that knows N ranks it (PTQ + N) far better, up
    to the seed noise, and rule (a), which implies the float quality for every scheme,
    ranks nothing."""
    ranking = compare_predictors(_records(), tolerance=0.01, resamples=300)["qat_ranking"]
    assert ranking["against"] == QAT_REFERENCE
    assert ranking["spearman"]["predictor"] > 0.75 > 0.25 > ranking["spearman"][QAT_REFERENCE]
    assert ranking["differences"]["predictor"]["better"]
    assert REFERENCE not in ranking["differences"] and ranking["spearman"][REFERENCE] is None
    assert 0.0 < ranking["ceiling"] <= 1.0


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    for _ in range(50):
        a, b = np.round(rng.normal(size=12), 1).tolist(), np.round(rng.normal(size=12), 1).tolist()
        assert spearman(a, b) == pytest.approx(float(spearmanr(a, b).statistic), abs=1e-12)
    assert math.isnan(spearman([1.0, 1.0], [1.0, 2.0]))


def test_the_qat_seed_ceiling_ranks_the_qat_quality_not_n():
    """Equal QAT quality on every scheme up to seed noise: N is ranked by the PTQ loss that
    every seed shares (ceiling near 1), the QAT quality by noise alone (ceiling near 0)."""
    rng = np.random.default_rng(1)
    records = [
        SchemeRecord({}, 1.0, 0.9 - 0.01 * i, tuple(float(0.95 + rng.normal(0, 0.001)) for _ in range(3)), {})
        for i in range(30)
    ]
    assert seed_ceiling(records) > 0.99
    assert abs(qat_seed_ceiling(records)) < 0.5


def test_half_agreement_says_how_reliable_a_many_seed_truth_is():
    """Equal QAT quality up to seed noise: halves of the seeds agree on N (the PTQ loss every
    seed shares) but not on the QAT quality (noise alone), whether the splits are enumerated
    (8 seeds) or drawn (30: the same answer on every call); nan below 2 seeds."""
    rng = np.random.default_rng(2)
    for seeds in (8, 30):
        records = [
            SchemeRecord({}, 1.0, 0.9 - 0.01 * i, tuple(float(0.95 + rng.normal(0, 0.001)) for _ in range(seeds)), {})
            for i in range(30)
        ]
        assert half_agreement(records) > 0.99
        assert abs(half_agreement(records, of_qat=True)) < 0.5
        assert half_agreement(records, of_qat=True) == half_agreement(records, of_qat=True)
    assert math.isnan(half_agreement([SchemeRecord({}, 0.9, 0.8, (0.85,), {}) for _ in range(3)]))


def test_the_seed_ceiling_is_high_when_seeds_agree_and_undefined_with_one():
    assert seed_ceiling(_records()) > 0.99
    one = [SchemeRecord({}, 0.9, 0.8, (0.85,), {}) for _ in range(3)]
    assert math.isnan(seed_ceiling(one))


def test_the_learned_share_is_fitted_on_the_paid_runs_and_ranks_like_the_rule():
    """The first two schemes kept half their loss; the share learned from them predicts the
    rest (one of which QAT recovered fully: the interval says how sure that miss was)."""
    paid = [SchemeRecord({"a": "w4a8"}, 1.0, 0.8 - 0.05 * i, (0.9 - 0.025 * i,) * 3, {}) for i in range(2)]
    rest = [
        SchemeRecord({"a": "w2a8"}, 1.0, 0.6, (1.0, 1.0, 1.0), {}),
        SchemeRecord({"a": "w8a4"}, 1.0, 0.7, (0.85, 0.85, 0.85), {}),
        SchemeRecord({"a": "w8a8"}, 1.0, 0.999, (0.9995, 0.9995, 0.9995), {}),
    ]
    records = [*paid, *rest]
    predictions = learned_share(records, 0.01, paid=2)
    assert [p.necessity for p in predictions] == pytest.approx([0.1, 0.125, 0.2, 0.15, 0.0005])
    assert [p.decision for p in predictions] == ["qat", "qat", "qat", "qat", "ptq"]
    scores = interval_scores(records, predictions, 0.01)
    assert scores["coverage"] == pytest.approx(4 / 5)  # the fully recovered one lies outside
    assert scores["uncertain"] == 0 and scores["sure_accuracy"] == 1.0


def test_the_split_share_needs_every_split_and_predicts_from_the_parts():
    from mpqc.necessity_eval import split_share
    from mpqc.recovery import LossSplit

    def record(w: float, a: float) -> SchemeRecord:  # QAT keeps the activation loss only
        return SchemeRecord({"a": "w4a4"}, 1.0, 1.0 - w - a, (1.0 - a,) * 3, {}, LossSplit(w, a))

    records = [record(0.3, 0.05), record(0.05, 0.3), record(0.2, 0.2), record(0.25, 0.05), record(0.05, 0.25)]
    predictions = split_share(records, 0.01, paid=3)
    assert predictions[3].necessity > 0.15 > 0.1 > predictions[4].necessity
    assert "ptq_loss_weights" in records[0].to_json()
    with pytest.raises(ValueError, match="split"):
        split_share([SchemeRecord({"a": "w4a4"}, 1.0, 0.9, (0.95,), {})], 0.01)
