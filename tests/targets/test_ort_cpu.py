"""ort-cpu on a tiny model: costs are measured, cached on content, never trusted when
corrupt, and the profiled variants are only those its search space uses."""

from __future__ import annotations

import builders as b
import numpy as np
import pytest
from mpqc.targets import OrtCpuTarget
from mpqc.targets.ort_cpu import MIXED_MAX, MIXED_MIN, _key, interleave, mixed_count, mixed_schemes

import mpqc
from mpqc.errors import SchemeError
from mpqc.precision import FLOAT, W8A8, Precision
from mpqc.scheme import Scheme


class Inputs:
    """A minimal `CostInputs`."""

    def __init__(self, prepared, use_cache=True):
        self.prepared, self.use_cache, self.lines = prepared, use_cache, []

    def sample_feed(self):
        return {"x": np.zeros((1, 3, 8, 8), np.float32)}

    def say(self, line):
        self.lines.append(line)


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQC_CACHE_DIR", str(tmp_path))
    return mpqc.prepare(b.conv_relu_gemm()), OrtCpuTarget(warmup=2, repeats=5)


def test_cache_hit_then_invalidation(setup, tmp_path):
    prepared, target = setup
    inputs = Inputs(prepared)
    first = target.cost_model(inputs)
    assert not first.cached and len(list((tmp_path / "ort-cpu").glob("*.json"))) == 1
    assert any("profiling variant 1/" in line for line in inputs.lines)
    again = target.cost_model(Inputs(prepared))
    assert again.cached and again.nodes == first.nodes
    assert set(first.spreads) == set(first.walls) and again.spreads == first.spreads
    assert all(s >= 0 for s in first.spreads.values())
    assert not target.cost_model(Inputs(prepared, use_cache=False)).cached
    other_threads = OrtCpuTarget(threads=2, warmup=2, repeats=5).cost_model(Inputs(prepared))
    assert not other_threads.cached  # the key holds threads, ORT version, CPU model and the model hash
    changed = mpqc.prepare(b.conv_relu_gemm(seed=1))
    assert not target.cost_model(Inputs(changed)).cached
    assert len(list((tmp_path / "ort-cpu").glob("*.json"))) == 3


@pytest.mark.parametrize("content", ["{}", "[]", "not json", '{"schema": "ort-cpu"}'])
def test_a_corrupt_cache_file_is_reported_and_measured_again(setup, tmp_path, capsys, content):
    prepared, target = setup
    target.cost_model(Inputs(prepared))
    (path,) = (tmp_path / "ort-cpu").glob("*.json")
    path.write_text(content)
    assert not target.cost_model(Inputs(prepared)).cached
    assert "corrupt cache entry" in capsys.readouterr().err


def test_a_tampered_cache_entry_fails_its_checksum(setup, tmp_path, capsys):
    prepared, target = setup
    target.cost_model(Inputs(prepared))
    (path,) = (tmp_path / "ort-cpu").glob("*.json")
    path.write_text(path.read_text().replace('"walls": {"', '"walls": {"x', 1))
    assert not target.cost_model(Inputs(prepared)).cached
    assert "checksum" in capsys.readouterr().err


def test_only_the_search_space_is_profiled(setup):
    prepared, target = setup
    costs = target.cost_model(Inputs(prepared))
    used = {p.label for p in target.precisions() if any(target.runs(x, p) for x in prepared.analysis.layers)}
    assert set(costs.walls) == used | {"alternate-int8", "alternate-float"}
    assert "w4a4" not in costs.walls and "w2a2" not in costs.walls
    assert "w8a8d" in costs.walls and "w4nb" not in costs.walls  # the Gemm's K = 8 is less than a block


class LinearInputs(Inputs):
    def sample_feed(self):
        return {"x": np.zeros((1, 64), np.float32)}


def test_dynamic_and_nbits_are_priced_where_a_layer_takes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQC_CACHE_DIR", str(tmp_path))
    target = OrtCpuTarget(warmup=2, repeats=5)
    conv = mpqc.prepare(b.conv_relu_gemm())
    dynamic, nbits = Precision.parse("w8a8d"), Precision.parse("w4nb")
    conv1, fc = conv.analysis.layer("conv1"), conv.analysis.layer("fc")
    assert not target.runs(conv1, dynamic) and not target.runs(conv1, nbits)
    assert target.runs(fc, dynamic) and not target.runs(fc, nbits)  # K = 8: not a whole block
    assert target.search_space(conv1) == (W8A8, Precision(8, None), Precision(4, None), FLOAT)
    linear = mpqc.prepare(b.linear_stack())
    costs = target.cost_model(LinearInputs(linear))
    assert {"w8a8d", "w4nb"} <= set(costs.walls)
    for layer in ("fc1", "fc2"):  # the fused kernel is the layer's own node
        assert costs.layer_cost(layer, dynamic) > 0 and costs.layer_cost(layer, nbits) > 0
    mixed = Scheme({"fc1": dynamic, "fc2": nbits})
    predicted, fallbacks = costs.predict(mixed)
    assert predicted > 0 and fallbacks <= 4


def test_layers_get_their_kernel_time_and_predictions_are_positive(setup):
    prepared, target = setup
    costs = target.cost_model(Inputs(prepared))
    for layer in ("conv1", "fc"):
        assert costs.layer_cost(layer, W8A8) > 0 and costs.layer_cost(layer, FLOAT) > 0
    names = prepared.analysis.layer_names
    mixed = Scheme({"conv1": W8A8, "fc": FLOAT})
    predicted, fallbacks = costs.predict(mixed)
    assert predicted > 0 and fallbacks <= 2
    uniform = costs.latency(Scheme.uniform(names, W8A8))
    assert uniform == pytest.approx(costs.walls["w8a8"], rel=0.5)
    assert len(costs.measure([Scheme.uniform(names, W8A8), mixed])) == 2


def test_a_precision_it_does_not_run_is_refused_by_name():
    target = OrtCpuTarget()
    with pytest.raises(SchemeError, match="does not run w4a4; it runs w8a8"):
        target.parse_space("w8a8,w4a4")
    assert target.parse_space("w8a8, float") == (W8A8, FLOAT)
    assert Precision.parse("w4af") in target.precisions()
    assert {"w8a8d", "w4nb"} <= {p.label for p in target.precisions()}
    with pytest.raises(SchemeError, match="does not run w2nb"):
        target.parse_space("w2nb")


def test_an_interrupted_profile_resumes_at_the_variant_it_stopped_at(setup, tmp_path, monkeypatch):
    prepared, target = setup
    real = OrtCpuTarget.profile_nodes
    calls: list[int] = []

    def dies_on_the_second(self, payload, feed):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, payload, feed)

    monkeypatch.setattr(OrtCpuTarget, "profile_nodes", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        target.cost_model(Inputs(prepared))
    assert len(list((tmp_path / "ort-cpu-variant").glob("*.json"))) == 1  # the first, stored as it finished
    monkeypatch.setattr(OrtCpuTarget, "profile_nodes", real)
    inputs = Inputs(prepared)
    resumed = target.cost_model(inputs)
    profiled = [line for line in inputs.lines if "profiling variant" in line]
    assert len(profiled) == len(resumed.walls) - 1 and "profiling variant 1/" not in " ".join(profiled)
    fresh = target.cost_model(Inputs(prepared, use_cache=False))
    assert set(fresh.nodes) == set(resumed.nodes)  # the stored variant reads back as it was measured


def test_a_small_model_times_mixed_schemes_and_fits_its_node_costs_to_them(setup):
    prepared, target = setup
    inputs = Inputs(prepared)
    costs = target.cost_model(inputs)
    assert MIXED_MIN <= costs.mixed <= MIXED_MAX
    assert any(f"and {costs.mixed} mixed schemes" in line for line in inputs.lines)
    labels = [label for label, _ in costs.timed()]
    assert labels[-1] == f"mixed-{costs.mixed - 1}" and set(costs.walls) <= set(labels) == set(costs.lowered)
    again = target.cost_model(Inputs(prepared))
    assert again.cached and again.lowered == costs.lowered and again.intercept == costs.intercept
    schemes = costs.mixed_schemes()
    assert len(set(schemes)) > 1 and schemes == mixed_schemes(prepared.analysis, target, len(schemes))
    assert all(costs.latency(s) > 0 for s in schemes)


def test_the_fit_reproduces_wall_times_an_additive_machine_would_show(setup):
    """Wall times of a 20-microsecond model jitter by more than any fixed tolerance on a
    shared machine (prediction error is measured in benchmarks/cross_runtime.py); here the
    times are made up by a known per-node cost and a per-run cost, and the refit must find
    each timed model's time again, mixed schemes included. The profiler's picture (the
    fit's prior) is made up too, each node blurred by a known factor: measured, it follows
    this machine's load, and so would the test."""
    prepared, target = setup
    costs = target.cost_model(Inputs(prepared))
    keys = sorted({key for nodes in costs.lowered.values() for key in nodes})
    true = {key: 1e-6 * (1 + i % 4) for i, key in enumerate(keys)}
    walls = {label: 3e-6 + sum(true[key] for key in nodes) for label, nodes in costs.lowered.items()}
    costs.profiles = {
        label: {
            raw: (1.6 if j % 2 else 0.7) * true.get(_key(*raw.split("|", 1)), 0.2e-6)
            for j, raw in enumerate(sorted(nodes))
        }
        for label, nodes in costs.profiles.items()
    }
    costs.set_walls(walls)
    for i, scheme in enumerate(costs.mixed_schemes()):
        assert costs.latency(scheme) == pytest.approx(walls[f"mixed-{i}"], rel=0.05)
    for label in costs.walls:
        predicted = costs.intercept + sum(costs.nodes[key] for key in costs.lowered[label])
        assert predicted == pytest.approx(walls[label], rel=0.05)


def test_a_big_model_is_not_worth_timing_mixed_schemes_for():
    assert mixed_count(1e-3, rounds=100) == MIXED_MAX  # 24 x 0.2 s
    assert mixed_count(5e-3, rounds=100) == 10
    assert mixed_count(20e-3, rounds=100) == 0  # fewer than MIXED_MIN would fit


def test_a_node_no_variant_ran_is_priced_as_its_namesake(setup, monkeypatch):
    prepared, target = setup
    costs = target.cost_model(Inputs(prepared))
    scheme = Scheme.uniform(prepared.analysis.layer_names, W8A8)
    real = target.lowered_nodes(costs.lower(scheme))
    known = next((op, name) for op, name in real if name.startswith("conv1_token_"))
    renamed = [("NhwcFusedConv", name) if (op, name) == known else (op, name) for op, name in real]
    monkeypatch.setattr(OrtCpuTarget, "lowered_nodes", lambda self, payload: renamed)
    predicted, fallbacks = costs.predict(scheme)
    assert fallbacks == 1
    others = sum(costs.nodes[_key(*n)] for n in real if n != known)
    namesake = costs.name_median["conv1"]  # conv1 as every variant ran it (Conv, QLinearConv)
    assert predicted == pytest.approx(costs.intercept + others + namesake)
    assert _key("NhwcFusedConv", known[1]) not in costs.nodes and "NhwcFusedConv" not in costs.op_median


def test_every_timed_run_follows_an_untimed_run_of_the_same_model():
    order: list[str] = []
    runs = [lambda name=name: order.append(name) for name in "abc"]
    measured = interleave(runs, warmup=1, rounds=3)
    assert [m.runs for m in measured] == [3, 3, 3]
    rounds = order[3:]
    assert rounds == ["a", "a", "b", "b", "c", "c"] * 3
