"""The probe-free necessity predictor: rule (a) before any run, the unrecovered share
learned from paid runs, and intervals that say when a decision is within the noise."""

from __future__ import annotations

import pytest

from mpqc.recovery import Prediction, RecoveryModel, decide, sampling_noise


def test_before_any_run_it_is_rule_a_with_a_wide_interval():
    model = RecoveryModel(0.98, tolerance=0.01)
    p = model.predict(None, 0.90)
    assert p.necessity == pytest.approx(0.08) and p.qat_quality == pytest.approx(0.98)
    assert p.decision == "qat"  # even if QAT kept 59% of the loss, it would add > 1 point
    small = model.predict(None, 0.965)  # 1.5 points lost: kappa decides, and it is unknown
    assert small.low < 0.01 < small.high and small.decision == "uncertain"


def test_the_share_is_learned_from_paid_runs_and_narrows():
    model = RecoveryModel(1.0, tolerance=0.01)
    model.refit([(0.80, 0.90), (0.60, 0.80), (0.90, 0.95)])  # each kept half its loss
    assert model.kappa == pytest.approx(0.5)
    p = model.predict(None, 0.70)
    assert p.necessity == pytest.approx(0.15) and p.qat_quality == pytest.approx(0.85)
    assert p.decision == "qat"  # a 15-point lift whose interval clears the tolerance
    assert model.kappa_sd < model.prior_sd


def test_runs_within_the_noise_say_nothing_about_the_share():
    model = RecoveryModel(0.98, tolerance=0.01, noise=0.01)
    model.refit([(0.975, 0.95)])  # PTQ lost less than twice the noise
    assert model.kappa == 0.0 and model.kappa_sd == model.prior_sd


def test_small_losses_are_sure_ptq_and_measure_noise_widens_the_interval():
    quiet = RecoveryModel(1.0, tolerance=0.01)
    quiet.refit([(0.8, 1.0), (0.7, 1.0), (0.9, 1.0)])  # QAT recovers everything
    assert quiet.predict(None, 0.999).decision == "ptq"
    noisy = RecoveryModel(1.0, tolerance=0.01, noise=0.02)
    noisy.refit([(0.8, 1.0), (0.7, 1.0), (0.9, 1.0)])
    assert noisy.predict(None, 0.999).decision == "uncertain"


def test_decide_and_noise():
    assert decide(0.05, 0.01, 0.01)[0] == "qat"
    assert decide(0.0, 0.001, 0.01)[0] == "ptq"
    decision, confidence = decide(0.012, 0.01, 0.01)
    assert decision == "uncertain" and 0.5 < confidence < 0.6
    assert sampling_noise(0.9, 100, True) == pytest.approx(0.03)
    assert sampling_noise(0.9, 100, False) == 0.0
    p = Prediction(0.02, 0.9, 0.01, True, 0.9, "uncertain")
    assert p.to_json()["interval"] == pytest.approx([0.02 - 0.0196, 0.02 + 0.0196])


def test_with_no_runs_the_split_model_is_rule_a_and_with_one_share_for_both_it_is_the_one_share_model():
    from mpqc.recovery import LossSplit, SplitRecoveryModel

    split = LossSplit.of(1.0, 0.7, activations_only=0.9)
    assert (split.weights, split.activations) == pytest.approx((0.2, 0.1))
    model = SplitRecoveryModel(1.0, tolerance=0.01)
    assert model.predict(0.7, split).necessity == pytest.approx(0.3)
    model.refit([(0.8, 0.9, LossSplit(0.1, 0.1)), (0.6, 0.8, LossSplit(0.2, 0.2))])  # each kept half
    assert model.shares == pytest.approx((0.5, 0.5)) and model.base.kappa == pytest.approx(0.5)


def test_the_split_model_learns_that_activation_loss_stays_and_ranks_by_it():
    """QAT wins back every weight loss and none of the activation loss: two schemes with the
    same PTQ loss then need QAT very differently, which one share cannot tell apart."""
    from mpqc.recovery import LossSplit, SplitRecoveryModel

    paid = [(1.0 - w - a, 1.0 - a, LossSplit(w, a)) for w, a in ((0.3, 0.05), (0.05, 0.3), (0.2, 0.2), (0.1, 0.4))]
    model = SplitRecoveryModel(1.0, tolerance=0.01)
    model.refit(paid)
    kw, ka = model.shares
    assert kw < 0.3 and ka > 0.8  # held towards the one-share kappa by the prior
    weights_heavy = model.predict(0.7, LossSplit(0.25, 0.05))
    activations_heavy = model.predict(0.7, LossSplit(0.05, 0.25))
    assert weights_heavy.necessity > 0.15 > 0.1 > activations_heavy.necessity
    assert weights_heavy.qat_quality <= 1.0 and model.to_json()["runs"] == 4 and "activations" in model.describe()
