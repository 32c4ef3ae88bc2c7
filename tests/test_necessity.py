from __future__ import annotations

import json

import pytest

from mpqc.errors import OptionError
from mpqc.necessity import LayerProbes, Measured, Oracle, activations_only, equal_cost_pairs, random_schemes
from mpqc.necessity_run import necessity_workload
from mpqc.precision import Precision
from mpqc.scheme import Scheme
from mpqc.workload import Workload


def _probes() -> LayerProbes:
    ref = Measured(0.98, 0.98, 0.0)
    table = {
        "a": {"w2a8": Measured(0.50, 0.97, 0.0), "w4a8": Measured(0.97, 0.98, 0.0)},
        "b": {"w2a8": Measured(0.30, 0.80, 0.0), "w4a8": Measured(0.96, 0.98, 0.0)},
    }
    return LayerProbes(0.98, "w8a8", ref, ["w2a8", "w4a8"], table, 1, 0.0)


def test_oracle_models_the_reachable_quality_not_a_sum_of_gains():
    oracle = Oracle(_probes(), tolerance=0.01, samples=10_000)
    both = Scheme({"a": Precision(2, 8), "b": Precision(2, 8)})
    prediction = oracle.predict(both, ptq_quality=0.10)
    assert prediction.qat_quality == pytest.approx(0.98 - 0.18 - 0.01, abs=0.01)  # b's loss stays
    assert prediction.necessity == pytest.approx(prediction.qat_quality - 0.10)
    assert oracle.baseline_sum(both) == pytest.approx(0.47 + 0.50)
    assert oracle.baseline_full_recovery(0.10) == pytest.approx(0.88)
    assert prediction.needs_qat and 0.5 <= prediction.confidence <= 1.0
    mild = oracle.predict(Scheme({"a": Precision(4, 8), "b": Precision(8, 8)}), ptq_quality=0.975)
    assert not mild.needs_qat


def test_probes_round_trip_through_json():
    probes = _probes()
    assert LayerProbes.from_json(json.loads(json.dumps(probes.to_json()))).table == probes.table


def test_activations_only_keeps_each_layers_activations_and_floats_its_weights():
    labels = {"a": "w4a4", "b": "w2a8", "c": "float", "d": "w4nb", "e": "w8a8d"}
    scheme = Scheme({k: Precision.parse(v) for k, v in labels.items()})
    assert activations_only(scheme).labels() == {"a": "wfa4", "b": "wfa8", "c": "float", "d": "float", "e": "w8a8d"}


def test_random_schemes_are_deterministic_and_never_all_w8a8():
    names = ["a", "b", "c"]
    first, second = random_schemes(names, 8, seed=3), random_schemes(names, 8, seed=3)
    assert first == second and len(set(first)) == 8
    assert all(any(p != Precision(8, 8) for p in s.layers.values()) for s in first)


def test_equal_cost_pairs_pick_the_largest_necessity_gap():
    schemes = random_schemes(["a", "b"], 4, seed=0)
    pairs = equal_cost_pairs(schemes, [0.0, 0.3, 0.05, 0.2], [1.0, 1.02, 2.0, 5.0])
    assert len(pairs) == 1 and pairs[0]["necessity_b"] == 0.3


def test_necessity_end_to_end_small(prepared_default, tmp_path):
    report = tmp_path / "nec"
    work = Workload.build(prepared_default)
    result = necessity_workload(
        work,
        bits=(2, 8),
        probe_epochs=1,
        epochs=1,
        validate=3,
        workers=1,
        seeds=2,
        short_epochs=1,
        report=report,
        progress=False,
    )
    assert set(result.probes.variants) == {"w2a8", "w8a2"}
    assert len(result.probes.table) == 6
    assert result.validation is not None and len(result.validation.measured) == 3
    for name in ("necessity.json", "necessity.txt", "necessity_heatmap.png", "oracle_validation.png"):
        assert (report / name).stat().st_size > 0
    assert (report / "necessity_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((report / "necessity.json").read_text())
    assert "spearman_oracle" in data["validation"]["stats"] and data["measure"] == "top1"
    records = data["validation"]["records"]  # anyone can recompute every statistic from these
    assert len(records) == 3 and all(len(r["qat"]) == 2 for r in records)
    keys = ("float", "ptq", "qat", "predicted_n", "rule_a", "kappa_only", "per_layer_sum", "short_qat", "split_share")
    for key in (*keys, "ptq_loss_weights", "ptq_loss_activations"):
        assert all(key in r for r in records), key
    names = work.prepared.analysis.layer_names
    for r in records:  # the activation part is the scheme at float weights, evaluated here again
        half = work.ptq_quality(activations_only(Scheme.from_json({"layers": r["scheme"]}, names)), "validation")
        assert r["ptq_loss_activations"] == pytest.approx(r["float"] - half)
        assert r["weight_part"] == pytest.approx(max(0.0, r["ptq_loss_weights"]))  # nothing fitted
    comparison = data["validation"]["comparison"]
    assert comparison["seeds"] == 2 and comparison["against"] == "rule_a"
    assert "rule_a" not in comparison["differences"] and "ci95" in comparison["differences"]["predictor"]["mae"]
    assert comparison["held_out"]["paid"] == 2 and comparison["held_out"]["schemes"] == 1
    text = (report / "necessity.txt").read_text()
    assert "vs rule_a" in text and "held out" in text and "split_share" in text
    assert comparison["qat_ranking"]["against"] == "ptq_order" and "ranking the QAT quality" in text
    # the held-out schemes' 4-bit layers got their auto-chosen ranges too, not a min-max fallback
    assert {2, 4, 8} <= set(work.choices) and {2, 4} <= set(work.weight_choices)


def test_seeds_and_short_epochs_are_checked(prepared_default):
    work = Workload.build(prepared_default)
    with pytest.raises(OptionError, match="--seeds"):
        necessity_workload(work, seeds=0, progress=False)
    with pytest.raises(OptionError, match="--short-epochs"):
        necessity_workload(work, epochs=2, short_epochs=3, progress=False)


def test_bad_bits(prepared_default):
    with pytest.raises(OptionError, match="--bits"):
        necessity_workload(Workload.build(prepared_default), bits=(3,))
