"""QAT necessity: how much QAT improves a scheme over PTQ, N(s) = Q_QAT(s) - Q_PTQ(s) in the
workload's quality measure, measured per scheme and per layer (probes), and predicted.

The oracle models the quality QAT can reach rather than adding up gains (N saturates: QAT
cannot pass the float model): each probe gives a layer's unrecoverable loss at a bit
width, U = Q_float - Q_QAT(probe); a scheme's QAT quality is predicted as Q_float minus the
sum of its layers' U (or a fraction kappa of its PTQ loss, whichever is larger), and N as
that minus the scheme's measured PTQ quality (cheap: one ONNX Runtime pass)."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpqc.executor import OnRetry
from mpqc.jobs import JobResult, JobStore, QatContext, QatJob, Where, run_jobs, run_ptq_jobs
from mpqc.necessity_eval import (
    SchemeRecord,
    compare_predictors,
    interval_scores,
    learned_share,
    paid_count,
    spearman,
    split_share,
    weight_part,
)
from mpqc.precision import W8A8, Precision
from mpqc.recovery import LossSplit, Prediction, activations_only, decide, sampling_noise
from mpqc.scheme import Scheme

__all__ = [
    "LayerProbes",
    "Prediction",
    "Oracle",
    "probe_layers",
    "probe_variants",
    "random_schemes",
    "VALIDATION_CHOICES",
    "measure_schemes",
    "validate_oracle",
    "equal_cost_pairs",
]

Measured = JobResult
#: the short-QAT predictor's seed, offset from the validation seeds so its noise is its own
_SHORT_SEED = 1000


def measure_schemes(
    context: QatContext,
    schemes: list[Scheme],
    epochs: int,
    workers: Where = 1,
    keep_models: bool = False,
    store: JobStore | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int | None = None,
    on_retry: OnRetry | None = None,
    keep_states: bool = False,
    resume: Sequence[bytes | None] | None = None,
) -> list[JobResult]:
    """PTQ and QAT quality (validation) of each scheme, stored as each finishes; `workers` is
    a worker count or an `ExecutorSpec`. `keep_states` keeps where each run stopped; `resume`
    (one per scheme, or None) goes on from such a state of a shorter run."""
    starts = list(resume) if resume is not None else [None] * len(schemes)
    if len(starts) != len(schemes):
        raise ValueError(f"{len(starts)} states to resume from for {len(schemes)} schemes")
    jobs = [
        QatJob(s.to_json(), epochs, context.config.seed if seed is None else seed, keep_models, keep_states, start)
        for s, start in zip(schemes, starts)
    ]
    return run_jobs(context, jobs, workers, store, progress, on_retry)


def recovered(result: JobResult, float_quality: float) -> float | None:
    """The share of the PTQ loss that QAT won back (None when PTQ lost nothing)."""
    lost = float_quality - result.ptq
    return None if lost <= 1e-9 else result.necessity / lost


def _point_json(result: JobResult, float_quality: float) -> dict[str, Any]:
    return {**result.to_json(), "necessity": result.necessity, "recovered": recovered(result, float_quality)}


@dataclass
class LayerProbes:
    """Each layer alone at each probe precision, the rest at the reference precision."""

    float_quality: float
    reference: str
    reference_point: Measured
    variants: list[str]
    table: dict[str, dict[str, Measured]]
    epochs: int
    seconds: float

    def unrecoverable(self, layer: str, variant: str) -> float:
        """Loss QAT cannot win back with this layer at this precision, beyond the reference."""
        point = self.table.get(layer, {}).get(variant)
        if point is None:
            return 0.0
        return max(0.0, self.reference_point.qat - point.qat)

    def ptq_loss(self, layer: str, variant: str) -> float:
        point = self.table.get(layer, {}).get(variant)
        return 0.0 if point is None else max(0.0, self.reference_point.ptq - point.ptq)

    def unrecovered_fraction(self, min_loss: float) -> float:
        """Median share of the PTQ loss that QAT left unrecovered, over probes that lost
        more than `min_loss` with PTQ (0 when none did)."""
        ref = self.reference_point
        fractions = [
            min(1.0, max(0.0, (ref.qat - m.qat) / (ref.ptq - m.ptq)))
            for row in self.table.values()
            for m in row.values()
            if ref.ptq - m.ptq > min_loss
        ]
        return float(np.median(fractions)) if fractions else 0.0

    def necessity(self, layer: str, variant: str) -> float:
        point = self.table.get(layer, {}).get(variant)
        return 0.0 if point is None else point.necessity

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerProbes:
        def point(d: dict[str, Any]) -> Measured:
            return Measured(float(d["ptq"]), float(d["qat"]), float(d["seconds"]))

        table = {layer: {v: point(d) for v, d in row.items()} for layer, row in data["layers"].items()}
        return cls(
            float(data["float_quality"]),
            data["reference"],
            point(data["reference_point"]),
            data["variants"],
            table,
            data["epochs"],
            data["seconds"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "float_quality": self.float_quality,
            "reference": self.reference,
            "reference_point": _point_json(self.reference_point, self.float_quality),
            "variants": self.variants,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "layers": {
                layer: {v: _point_json(m, self.float_quality) for v, m in row.items()}
                for layer, row in self.table.items()
            },
        }


def probe_variants(bits: list[int]) -> list[str]:
    """Weight probes wBa8 for each bit width, activation probes w8aB below 8 bits."""
    variants = [f"w{b}a8" for b in sorted(bits) if b != 8]
    variants += [f"w8a{b}" for b in sorted(bits) if b != 8]
    return variants


def probe_layers(
    context: QatContext,
    names: list[str],
    float_quality: float,
    variants: list[str],
    epochs: int,
    workers: Where = 1,
    store: JobStore | None = None,
    progress: Callable[[int], None] | None = None,
    on_retry: OnRetry | None = None,
) -> LayerProbes:
    """The reference (all w8a8) and each layer alone at each variant, PTQ and QAT."""
    start = time.perf_counter()
    reference = Scheme.uniform(names, W8A8)
    jobs: list[Scheme] = [reference]
    keys: list[tuple[str, str]] = []
    for layer in names:
        for variant in variants:
            jobs.append(reference.with_layer(layer, Precision.parse(variant)))
            keys.append((layer, variant))
    results = measure_schemes(context, jobs, epochs, workers, store=store, progress=progress, on_retry=on_retry)
    table: dict[str, dict[str, Measured]] = {layer: {} for layer in names}
    for (layer, variant), measured in zip(keys, results[1:]):
        table[layer][variant] = measured
    return LayerProbes(float_quality, "w8a8", results[0], list(variants), table, epochs, time.perf_counter() - start)


@dataclass
class Oracle:
    """Predicts N(s) from the layer probes and the scheme's measured PTQ accuracy.

    The loss QAT cannot recover is the larger of the layers' own unrecoverable losses
    (summed, each above the evaluation noise) and a fraction `kappa` of the scheme's PTQ
    loss: when several layers are weak their damage compounds beyond what single-layer
    probes show. `kappa` starts as the median unrecovered fraction over the probes with a
    clear PTQ loss; `mpqc compile` refits it from the QAT runs it has paid for.

    Uncertainty: the evaluation split's sampling noise on both accuracies plus a model term,
    a fixed prior of `relative_error` times the predicted unrecoverable loss; confidence is
    the probability, under a normal model, that the PTQ/QAT decision is right."""

    probes: LayerProbes
    tolerance: float = 0.01
    samples: int = 300
    relative_error: float = 0.5
    kappa: float | None = None

    def __post_init__(self) -> None:
        if self.kappa is None:
            self.kappa = self.probes.unrecovered_fraction(5 * self.noise_floor)

    def refit(self, observed: list[tuple[float, float]]) -> None:
        """From measured (PTQ, QAT) accuracies of whole schemes."""
        ref = self.probes.reference_point
        fractions = [
            min(1.0, max(0.0, (ref.qat - qat) / (ref.ptq - ptq)))
            for ptq, qat in observed
            if ref.ptq - ptq > 5 * self.noise_floor
        ]
        if fractions:
            self.kappa = float(np.median(fractions))

    def variants_of(self, precision: Precision) -> list[str]:
        """The probe variants a layer precision is made of (weight part, activation part)."""
        w = precision.w_bits if precision.w_bits is not None else 8
        a = precision.a_bits if precision.a_bits is not None else 8
        parts = []
        if w != 8:
            parts.append(f"w{w}a8")
        if a != 8:
            parts.append(f"w8a{a}")
        return parts

    @property
    def noise_floor(self) -> float:
        """One standard error of a probe's measured accuracy: a layer's unrecoverable loss
        below it is indistinguishable from evaluation noise and is not counted (summing many
        noisy small losses otherwise swamps the few real ones)."""
        return sampling_noise(self.probes.reference_point.qat, self.samples, per_sample_binary=True)

    def unrecoverable(self, scheme: Scheme) -> float:
        """The scheme's layers' own unrecoverable losses, each above the noise floor."""
        floor = self.noise_floor
        return sum(
            max(0.0, self.probes.unrecoverable(layer, variant) - floor)
            for layer, precision in scheme.layers.items()
            for variant in self.variants_of(precision)
        )

    def predict(self, scheme: Scheme, ptq_quality: float) -> Prediction:
        per_layer = self.unrecoverable(scheme)
        ptq_loss = max(0.0, self.probes.reference_point.ptq - ptq_quality)
        lost = max(per_layer, (self.kappa or 0.0) * ptq_loss)
        qat = max(0.0, self.probes.reference_point.qat - lost)
        necessity = max(0.0, qat - ptq_quality)
        noise = math.hypot(
            sampling_noise(ptq_quality, self.samples, per_sample_binary=True),
            sampling_noise(qat, self.samples, per_sample_binary=True),
        )
        sigma = math.sqrt(noise**2 + (self.relative_error * lost) ** 2)
        decision, confidence = decide(necessity, sigma, self.tolerance)
        return Prediction(necessity, qat, sigma, necessity > self.tolerance, confidence, decision)

    def describe(self) -> str:
        return f"layer probes, kappa {self.kappa:.2f}"

    def to_json(self) -> dict[str, Any]:
        return {"model": "layer probes; max(sum of unrecoverable, kappa * PTQ loss)", "kappa": self.kappa}

    def baseline_full_recovery(self, ptq_quality: float) -> float:
        """Baseline (a): QAT recovers everything, N = Q_float - Q_PTQ."""
        return max(0.0, self.probes.float_quality - ptq_quality)

    def kappa_only(self, ptq_quality: float) -> float:
        """The oracle without its per-layer term: QAT leaves `kappa` of the PTQ loss."""
        ref = self.probes.reference_point
        lost = (self.kappa or 0.0) * max(0.0, ref.ptq - ptq_quality)
        return max(0.0, ref.qat - lost - ptq_quality)

    def rule_minus_probes(self, scheme: Scheme, ptq_quality: float) -> float:
        """Rule (a) less the layers' own unrecoverable losses (each above the noise floor):
        QAT wins back everything but what single-layer probes showed it cannot."""
        return max(0.0, self.baseline_full_recovery(ptq_quality) - self.unrecoverable(scheme))

    def baseline_sum(self, scheme: Scheme) -> float:
        """Baseline (b): the sum of the per-layer probe N values."""
        return sum(
            self.probes.necessity(layer, variant)
            for layer, precision in scheme.layers.items()
            for variant in self.variants_of(precision)
        )


#: what each layer of a held-out validation scheme is drawn from (2-bit weights and activations included)
VALIDATION_CHOICES = ("w8a8", "w4a8", "w2a8", "w4a4", "w8a4", "w8a2")


def random_schemes(names: list[str], count: int, seed: int, choices: list[str] | None = None) -> list[Scheme]:
    """Held-out mixed schemes: each layer drawn from `choices`, each scheme with at least
    one layer below w8a8 (all-w8a8 carries no information)."""
    rng = random.Random(seed)
    options = [Precision.parse(c) for c in (choices or VALIDATION_CHOICES)]
    schemes: list[Scheme] = []
    seen: set[Scheme] = set()
    while len(schemes) < count:
        scheme = Scheme({n: rng.choice(options) for n in names})
        if scheme in seen or all(p == W8A8 for p in scheme.layers.values()):
            continue
        seen.add(scheme)
        schemes.append(scheme)
    return schemes


@dataclass
class Validation:
    schemes: list[Scheme]
    measured: list[Measured]
    predicted: list[Prediction]
    baseline_a: list[float]
    baseline_b: list[float]
    tolerance: float
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    #: every scheme with QAT per seed and each predictor's N (`mpqc.necessity_eval`)
    records: list[SchemeRecord] = field(default_factory=list)
    #: the predictors scored against the seed-averaged truth, with bootstrap intervals
    comparison: dict[str, Any] = field(default_factory=dict)

    def to_json(self, float_quality: float) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "seconds": self.seconds,
            "stats": self.stats,
            "comparison": self.comparison,
            "records": [r.to_json() for r in self.records],
            "schemes": [
                {
                    "scheme": s.labels(),
                    "measured": _point_json(m, float_quality),
                    "predicted": p.to_json(),
                    "baseline_full_recovery": a,
                    "baseline_sum": b,
                }
                for s, m, p, a, b in zip(self.schemes, self.measured, self.predicted, self.baseline_a, self.baseline_b)
            ],
        }


def validate_oracle(
    context: QatContext,
    names: list[str],
    oracle: Oracle,
    count: int,
    epochs: int,
    workers: Where,
    seed: int,
    store: JobStore | None = None,
    seeds: int = 1,
    short_epochs: int = 0,
    progress: Callable[[int], None] | None = None,
    noise: float = 0.0,
) -> Validation:
    """Measure `count` random held-out schemes (PTQ, and QAT once per seed: `seed` ..
    `seed + seeds - 1`) and score the oracle and the baselines against the seed-averaged N.
    With `short_epochs`, also the short-QAT predictor: N measured after that many epochs
    (its own seed), the cheap end of a learning curve. The probe-free predictor is fitted on
    the first quarter of the schemes' first-seed runs (`learned_share`), `noise` being one
    standard error of a measured quality; so is the one with a share per part of the PTQ
    loss (`split_share`), which costs one more PTQ evaluation per scheme (its activations
    alone); that evaluation also gives `weight_part`, N = PTQ at float weights - PTQ, with
    nothing fitted. Fitted predictors are also scored on the schemes they did not learn from
    (`comparison["held_out"]`)."""
    start = time.perf_counter()
    schemes = random_schemes(names, count, seed)
    runs = [
        measure_schemes(context, schemes, epochs, workers, store=store, progress=progress, seed=seed + k)
        for k in range(seeds)
    ]
    measured = runs[0]
    short = (
        measure_schemes(
            context, schemes, short_epochs, workers, store=store, progress=progress, seed=seed + _SHORT_SEED
        )
        if short_epochs
        else None
    )
    float_quality = oracle.probes.float_quality
    halves = run_ptq_jobs(
        context, [activations_only(s) for s in schemes], len(context.validation), workers, progress, store
    )
    splits = [LossSplit.of(float_quality, m.ptq, half) for m, half in zip(measured, halves)]
    predicted = [oracle.predict(s, m.ptq) for s, m in zip(schemes, measured)]
    baseline_a = [oracle.baseline_full_recovery(m.ptq) for m in measured]
    baseline_b = [oracle.baseline_sum(s) for s in schemes]
    records = []
    for i, (scheme, m) in enumerate(zip(schemes, measured)):
        guesses = {
            "predictor": predicted[i].necessity,
            "rule_a": baseline_a[i],
            "kappa_only": oracle.kappa_only(m.ptq),
            "per_layer_sum": baseline_b[i],
            "rule_minus_probes": oracle.rule_minus_probes(scheme, m.ptq),
            "weight_part": weight_part(splits[i]),
        }
        if short is not None:
            guesses["short_qat"] = short[i].necessity
        qat = tuple(run[i].qat for run in runs)
        records.append(SchemeRecord(scheme.labels(), float_quality, m.ptq, qat, guesses, splits[i]))
    learned = learned_share(records, oracle.tolerance, noise)
    split = split_share(records, oracle.tolerance, noise)
    records = [
        dataclasses.replace(r, predicted={**r.predicted, "learned_share": p.necessity, "split_share": q.necessity})
        for r, p, q in zip(records, learned, split)
    ]
    truth = [r.necessity for r in records]
    needs = [r.needs_qat(oracle.tolerance) for r in records]
    mean_qat = [float(np.mean(r.qat)) for r in records]

    def decision_accuracy(values: list[float]) -> float:
        return float(np.mean([(v > oracle.tolerance) == t for v, t in zip(values, needs)]))

    stats = {
        "spearman_oracle": spearman([p.necessity for p in predicted], truth),
        "spearman_full_recovery": spearman(baseline_a, truth),
        "spearman_sum_of_probes": spearman(baseline_b, truth),
        "spearman_qat_quality": spearman([p.qat_quality for p in predicted], mean_qat),
        "mae_qat_quality": float(np.mean([abs(p.qat_quality - q) for p, q in zip(predicted, mean_qat)])),
        "mae_necessity_oracle": float(np.mean([abs(p.necessity - t) for p, t in zip(predicted, truth)])),
        "decision_accuracy_oracle": decision_accuracy([p.necessity for p in predicted]),
        "decision_accuracy_full_recovery": decision_accuracy(baseline_a),
        "decision_accuracy_sum_of_probes": decision_accuracy(baseline_b),
        "mean_confidence": float(np.mean([p.confidence for p in predicted])),
    }
    comparison = compare_predictors(records, oracle.tolerance, seed=seed)
    comparison["learned_share_intervals"] = interval_scores(records, learned, oracle.tolerance)
    comparison["split_share_intervals"] = interval_scores(records, split, oracle.tolerance)
    # the fitted predictors saw the first schemes' first seed: score them where they did not
    paid = paid_count(len(records))
    comparison["held_out"] = {"paid": paid, **compare_predictors(records[paid:], oracle.tolerance, seed=seed)}
    return Validation(
        schemes,
        measured,
        predicted,
        baseline_a,
        baseline_b,
        oracle.tolerance,
        time.perf_counter() - start,
        stats,
        records,
        comparison,
    )


@dataclass
class NecessityReport:
    model: str
    measure: str
    float_quality: float
    probes: LayerProbes
    oracle: Oracle
    validation: Validation | None
    pairs: list[dict[str, Any]]
    cost_target: str
    qat_epochs: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "measure": self.measure,
            "float_quality": self.float_quality,
            "tolerance": self.oracle.tolerance,
            "probe_epochs": self.probes.epochs,
            "qat_epochs": self.qat_epochs,
            "probes": self.probes.to_json(),
            "validation": None if self.validation is None else self.validation.to_json(self.float_quality),
            "equal_cost_pairs": self.pairs,
            "cost_target": self.cost_target,
            "seconds": self.seconds,
            "notes": self.notes,
        }


def equal_cost_pairs(
    schemes: list[Scheme], necessities: list[float], costs: list[float], within: float = 0.05, top: int = 3
) -> list[dict[str, Any]]:
    """Pairs of schemes whose costs differ by at most `within` (relative) but whose N differ
    most: the observation that same-cost schemes need QAT to very different degrees."""
    pairs = []
    for i in range(len(schemes)):
        for j in range(i + 1, len(schemes)):
            if abs(costs[i] - costs[j]) <= within * max(costs[i], costs[j]):
                pairs.append((abs(necessities[i] - necessities[j]), i, j))
    pairs.sort(reverse=True)
    return [
        {
            "a": schemes[i].labels(),
            "b": schemes[j].labels(),
            "cost_a": costs[i],
            "cost_b": costs[j],
            "necessity_a": necessities[i],
            "necessity_b": necessities[j],
        }
        for _, i, j in pairs[:top]
    ]
