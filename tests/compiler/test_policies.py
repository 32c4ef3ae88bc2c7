"""QAT policies on synthetic candidates: which ones each trains, and why, without QAT."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mpqc.compiler.candidates import Candidate
from mpqc.compiler.policies import PolicyContext, make_policy
from mpqc.cost import SchemeCost
from mpqc.precision import Precision
from mpqc.recovery import RecoveryModel, SplitRecoveryModel
from mpqc.scheme import Scheme

FLOAT = 0.98


def _candidates(ptq: list[float]) -> list[Candidate]:
    labels = ["w8a8", "w4a8", "w2a8", "w4a4", "w8a4", "w8a2", "w2a4", "w4a2"]
    out = []
    for i, q in enumerate(ptq):
        scheme = Scheme({"a": Precision.parse(labels[i]), "b": Precision.parse("w8a8")})
        out.append(
            Candidate(scheme=scheme, origin="test", cost=SchemeCost(1e-3, 0, 0, 0), fits=True, predicted_ptq=q, ptq=q)
        )
    return out


def _context(
    qat_of: dict[float, float],
    trained: list[float],
    max_runs: int = 4,
    short_of: dict[float, float] | None = None,
    short_runs: list[float] | None = None,
) -> PolicyContext:
    """`qat_of` maps a candidate's PTQ quality to its full QAT result, `short_of` to its
    short one (epochs below the configured 3); `trained` and `short_runs` collect who ran."""

    def train(batch: Sequence[Candidate], epochs: int | None = None) -> None:
        for c in batch:
            assert c.ptq is not None
            if epochs is not None and epochs < 3:
                assert short_of is not None and short_runs is not None
                short_runs.append(c.ptq)
                c.short_qat = result = short_of[c.ptq]
            else:
                trained.append(c.ptq)
                result = qat_of[c.ptq]
            c.qat = result if c.qat is None else max(c.qat, result)

    model = RecoveryModel(FLOAT, tolerance=0.01)
    return PolicyContext(FLOAT, 0.01, max_runs, 2, 2, train, lambda text: None, model, FLOAT)


def test_predicted_stops_once_nothing_left_can_beat_the_best():
    candidates = _candidates([0.96, 0.95, 0.60, 0.40])
    trained: list[float] = []
    qat = {0.96: 0.978, 0.95: 0.975, 0.60: 0.80, 0.40: 0.60}  # the best PTQ recovers to float
    runs = make_policy("predicted").run(candidates, _context(qat, trained))
    assert trained == [0.96, 0.95] and runs == 2  # kappa ~ 0.1 from them: nothing else can win
    assert all(c.decision for c in candidates)
    assert "cannot change the winner" in candidates[2].decision


def test_predicted_goes_on_while_a_candidate_could_still_win():
    candidates = _candidates([0.93, 0.92, 0.91, 0.90])
    trained: list[float] = []
    qat = {0.93: 0.94, 0.92: 0.96, 0.91: 0.975, 0.90: 0.95}  # the first round's shares disagree
    runs = make_policy("predicted").run(candidates, _context(qat, trained))
    assert runs == 4 and trained[:2] == [0.93, 0.92]
    assert max(c.quality for c in candidates) == 0.975  # found where ptq-rule (top 2) would not


def test_predicted_cannot_foresee_what_its_runs_do_not_show():
    """The share is one number for every scheme: when the best by PTQ recover least, the
    others are predicted to recover as little, and the policy stops (always-QAT would not)."""
    candidates = _candidates([0.96, 0.95, 0.90, 0.85])
    trained: list[float] = []
    qat = {0.96: 0.962, 0.95: 0.955, 0.90: 0.975, 0.85: 0.97}
    assert make_policy("predicted").run(candidates, _context(qat, trained)) == 2


def test_ptq_rule_trains_its_top_k_only():
    candidates = _candidates([0.96, 0.95, 0.90, 0.85])
    trained: list[float] = []
    qat = {0.96: 0.962, 0.95: 0.955, 0.90: 0.975, 0.85: 0.97}
    assert make_policy("ptq-rule").run(candidates, _context(qat, trained)) == 2
    assert trained == [0.96, 0.95]


def test_predicted_respects_the_run_limit_and_says_so():
    candidates = _candidates([0.93, 0.92, 0.91, 0.90])
    trained: list[float] = []
    qat = {0.93: 0.94, 0.92: 0.96, 0.91: 0.975, 0.90: 0.95}
    assert make_policy("predicted").run(candidates, _context(qat, trained, max_runs=2)) == 2
    assert any("limit" in c.decision for c in candidates if c.qat is None)


def test_predicted_trains_nothing_when_ptq_is_already_within_the_tolerance_of_the_ceiling():
    candidates = _candidates([0.975, 0.95])
    trained: list[float] = []
    assert make_policy("predicted").run(candidates, _context({}, trained)) == 0
    assert trained == [] and all(c.decision.startswith("ptq") for c in candidates)
    assert "cannot change the winner" in candidates[1].decision


def test_predicted_split_spends_no_run_where_the_loss_is_in_the_activations():
    """Four candidates; each one's PTQ quality at float weights is known. The first round
    shows QAT winning back weight loss and keeping activation loss. The one-share model,
    seeing only PTQ, cannot rule out the last candidate and trains all four; the split
    model sees its loss lies in its activations and stops after three, same winner."""
    ptq, halves = [0.90, 0.89, 0.80, 0.75], [0.905, 0.95, 0.97, 0.76]
    qat = dict(zip(ptq, (0.905, 0.945, 0.965, 0.76)))
    results = {}
    for name in ("predicted", "predicted-split"):
        candidates = _candidates(ptq)
        for c, half in zip(candidates, halves):
            c.activations_ptq = half
        trained: list[float] = []
        ctx = _context(qat, trained)
        if make_policy(name).needs_split:
            ctx.predictor = SplitRecoveryModel(FLOAT, tolerance=0.01)
        runs = make_policy(name).run(candidates, ctx)
        results[name] = (runs, trained, max(c.quality for c in candidates))
        if name == "predicted-split":
            assert "cannot change the winner" in candidates[3].decision
    assert results["predicted"] == (4, ptq, 0.965)
    assert results["predicted-split"] == (3, ptq[:3], 0.965)
    assert not make_policy("predicted").needs_split


def test_predicted_split_refuses_a_candidate_without_its_split():
    candidates = _candidates([0.96, 0.95])
    ctx = _context({0.96: 0.97, 0.95: 0.96}, [])
    ctx.predictor = SplitRecoveryModel(FLOAT, tolerance=0.01)
    with pytest.raises(ValueError, match="activations-only"):
        make_policy("predicted-split").run(candidates, ctx)


SHORT_PTQ = [0.96, 0.95, 0.90, 0.85]
#: the best by PTQ recover least, and the short runs show it
SHORT = {0.96: 0.961, 0.95: 0.952, 0.90: 0.968, 0.85: 0.964}
FULL = {0.96: 0.962, 0.95: 0.955, 0.90: 0.975, 0.85: 0.97}


def test_short_qat_gives_every_candidate_a_short_run_and_the_best_by_it_the_full_run():
    candidates = _candidates(SHORT_PTQ)
    trained: list[float] = []
    short: list[float] = []
    runs = make_policy("short-qat").run(candidates, _context(FULL, trained, short_of=SHORT, short_runs=short))
    assert sorted(short) == sorted(SHORT_PTQ) and trained == [0.90, 0.85] and runs == 6
    assert max(c.quality for c in candidates) == 0.975  # ptq-rule's top 2 by PTQ reach 0.962
    by_ptq = {c.ptq: c for c in candidates}
    assert "top 2 go on" in by_ptq[0.90].decision and "not in the top 2" in by_ptq[0.96].decision
    assert by_ptq[0.96].qat == by_ptq[0.96].short_qat == 0.961  # a short-trained model counts


def test_short_qat_respects_the_run_limit_in_its_full_rung():
    trained: list[float] = []
    ctx = _context(FULL, trained, max_runs=1, short_of=SHORT, short_runs=[])
    assert make_policy("short-qat").run(_candidates(SHORT_PTQ), ctx) == 5 and trained == [0.90]


def test_short_qat_stops_after_the_short_rung_when_it_reaches_the_ceiling():
    candidates = _candidates([0.96, 0.95, 0.94])
    trained: list[float] = []
    ctx = _context({}, trained, short_of={0.96: 0.975, 0.95: 0.97, 0.94: 0.96}, short_runs=[])
    assert make_policy("short-qat").run(candidates, ctx) == 3 and trained == []
    assert all("no full runs" in c.decision for c in candidates)


def test_short_qat_with_short_epochs_at_the_full_count_is_one_rung():
    """A short run as long as the full one is the full one: no second rung replays it."""
    candidates = _candidates(SHORT_PTQ)
    trained: list[float] = []
    ctx = _context(FULL, trained)
    ctx.short_epochs = 3
    assert make_policy("short-qat").run(candidates, ctx) == 4 and sorted(trained) == sorted(SHORT_PTQ)


def test_short_qat_trains_nothing_when_ptq_is_already_within_the_tolerance_of_the_ceiling():
    candidates = _candidates([0.975, 0.95])
    short: list[float] = []
    ctx = _context({}, [], short_of={}, short_runs=short)
    assert make_policy("short-qat").run(candidates, ctx) == 0 and short == []
    assert all(c.decision.startswith("ptq") for c in candidates)


def test_short_qat_skips_the_short_rung_when_every_candidate_would_go_on():
    trained: list[float] = []
    short: list[float] = []
    ctx = _context(FULL, trained, short_of=SHORT, short_runs=short)
    assert make_policy("short-qat").run(_candidates([0.96, 0.95]), ctx) == 2
    assert short == [] and trained == [0.96, 0.95]


def test_every_policy_says_what_the_run_limit_bounds():
    from mpqc.compiler.options import POLICIES

    limits = {name: make_policy(name).describe_limit(4) for name in POLICIES}
    assert limits["always"] == limits["never"] == "no run limit" and limits["predicted"] == "limit 4"
    assert "4 full run(s)" in limits["short-qat"]
