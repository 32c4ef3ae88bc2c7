"""QAT necessity: how much QAT improves a scheme over PTQ, N(s) = Acc_QAT(s) - Acc_PTQ(s),
measured per scheme and per layer (probes), and predicted by an oracle.

The oracle models the accuracy QAT can reach rather than adding up gains (N saturates: QAT
cannot pass the float accuracy): each probe gives a layer's unrecoverable loss at a bit
width, U = Acc_float - Acc_QAT(probe); the QAT accuracy of a scheme is predicted as
Acc_float - sum of its layers' U, and N as that minus the scheme's measured PTQ accuracy
(cheap: one ONNX Runtime pass)."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from mpqc.api import Prepared, emit_qdq
from mpqc.calibrate import Calibration
from mpqc.data import Dataset
from mpqc.evaluate import collect_outputs, evaluate_session
from mpqc.executor import make_executor
from mpqc.qat.train import QatConfig, train_scheme
from mpqc.runtime import make_session
from mpqc.scheme import LayerPrecision, Scheme

__all__ = [
    "Measured",
    "LayerProbes",
    "Prediction",
    "Oracle",
    "NecessityContext",
    "measure_schemes",
    "probe_layers",
    "ptq_top1",
    "random_schemes",
    "validate_oracle",
]


@dataclass(frozen=True)
class Measured:
    """PTQ and QAT accuracy of one scheme (ONNX Runtime, the evaluation split)."""

    ptq: float
    qat: float
    seconds: float
    #: the trained QDQ model, when asked for (not part of the JSON)
    model: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def necessity(self) -> float:
        return self.qat - self.ptq

    def recovered(self, float_top1: float) -> float | None:
        lost = float_top1 - self.ptq
        return None if lost <= 1e-9 else self.necessity / lost

    def to_json(self, float_top1: float) -> dict[str, Any]:
        return {
            "ptq": self.ptq,
            "qat": self.qat,
            "necessity": self.necessity,
            "recovered": self.recovered(float_top1),
            "seconds": self.seconds,
        }


@dataclass
class NecessityContext:
    """Everything a worker needs to measure schemes: picklable, sent once per worker."""

    model_bytes: bytes
    calibration: Calibration
    train: Dataset
    evaluation: Dataset
    config: QatConfig
    loss: str = "labels"


_STATE: dict[str, Any] = {}


def _init_worker(context: NecessityContext, threads: int) -> None:
    import torch

    from mpqc.api import prepare

    torch.set_num_threads(threads)
    prepared = prepare(ir.serde.deserialize_model(_parse(context.model_bytes)), simplify=False)
    session = make_session(prepared.model)
    teacher = collect_outputs(session, context.train) if context.loss == "distill" else None
    _STATE.update(context=context, prepared=prepared, teacher=teacher)


def _parse(payload: bytes) -> Any:
    import onnx

    proto = onnx.ModelProto()
    proto.ParseFromString(payload)
    return proto


def ptq_top1(prepared: Prepared, scheme: Scheme, calibration: Calibration, data: Dataset) -> float:
    """Top-1 of the scheme's PTQ model in ONNX Runtime (0 for data without labels)."""
    return evaluate_session(make_session(emit_qdq(prepared, scheme, calibration).model), data).top1 or 0.0


def _measure(job: tuple[dict[str, Any], int] | tuple[dict[str, Any], int, bool]) -> Measured:
    scheme_json, epochs = job[0], job[1]
    keep = len(job) > 2 and bool(job[2])
    context: NecessityContext = _STATE["context"]
    prepared: Prepared = _STATE["prepared"]
    scheme = Scheme.from_json(scheme_json, prepared.analysis.layer_names)
    start = time.perf_counter()
    ptq = ptq_top1(prepared, scheme, context.calibration, context.evaluation)
    config = dataclasses.replace(context.config, epochs=epochs)
    qdq, _, _, _ = train_scheme(prepared, scheme, context.calibration, context.train, config, _STATE["teacher"])
    payload = ir.serde.serialize_model(qdq).SerializeToString()
    qat = evaluate_session(make_session(payload), context.evaluation).top1 or 0.0
    return Measured(ptq, qat, time.perf_counter() - start, payload if keep else None)


def measure_schemes(
    context: NecessityContext,
    schemes: list[Scheme],
    epochs: int,
    workers: int = 1,
    keep_models: bool = False,
    progress: Any = None,
) -> list[Measured]:
    """PTQ and QAT for each scheme, in a pool of worker processes (one torch thread each)."""
    if not schemes:
        return []
    workers = max(1, min(workers, len(schemes)))
    threads = 1 if workers > 1 else 2
    executor = make_executor(workers, _init_worker, (context, threads))
    results = []
    try:
        for measured in executor.map(_measure, [(s.to_json(), epochs, keep_models) for s in schemes]):
            results.append(measured)
            if progress is not None:
                progress.update(1)
        return results
    finally:
        executor.close()


@dataclass
class LayerProbes:
    """Each layer alone at each probe precision, the rest at the reference precision."""

    float_top1: float
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
            return Measured(d["ptq"], d["qat"], d["seconds"])

        table = {layer: {v: point(d) for v, d in row.items()} for layer, row in data["layers"].items()}
        return cls(
            data["float_top1"],
            data["reference"],
            point(data["reference_point"]),
            data["variants"],
            table,
            data["epochs"],
            data["seconds"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "float_top1": self.float_top1,
            "reference": self.reference,
            "reference_point": self.reference_point.to_json(self.float_top1),
            "variants": self.variants,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "layers": {
                layer: {v: m.to_json(self.float_top1) for v, m in row.items()} for layer, row in self.table.items()
            },
        }


def probe_variants(bits: list[int]) -> list[str]:
    """Weight probes wBa8 for each bit width, activation probes w8aB below 8 bits."""
    variants = [f"w{b}a8" for b in sorted(bits) if b != 8]
    variants += [f"w8a{b}" for b in sorted(bits) if b != 8]
    return variants


def probe_layers(
    context: NecessityContext,
    prepared: Prepared,
    float_top1: float,
    variants: list[str],
    epochs: int,
    workers: int = 1,
    progress: Any = None,
) -> LayerProbes:
    """The reference (all w8a8) and each layer alone at each variant, PTQ and QAT."""
    start = time.perf_counter()
    names = prepared.analysis.layer_names
    reference = LayerPrecision(8, 8)
    jobs: list[Scheme] = [Scheme.uniform(names, reference)]
    keys: list[tuple[str, str]] = []
    for layer in names:
        for variant in variants:
            precision = LayerPrecision.from_shorthand(variant)
            jobs.append(Scheme({n: (precision if n == layer else reference) for n in names}))
            keys.append((layer, variant))
    results = measure_schemes(context, jobs, epochs, workers, progress=progress)
    table: dict[str, dict[str, Measured]] = {layer: {} for layer in names}
    for (layer, variant), measured in zip(keys, results[1:]):
        table[layer][variant] = measured
    return LayerProbes(float_top1, "w8a8", results[0], list(variants), table, epochs, time.perf_counter() - start)


@dataclass(frozen=True)
class Prediction:
    necessity: float
    qat_top1: float
    sigma: float
    needs_qat: bool
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {
            "necessity": self.necessity,
            "qat_top1": self.qat_top1,
            "sigma": self.sigma,
            "needs_qat": self.needs_qat,
            "confidence": self.confidence,
        }


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

    def refit_kappa(self, observed: list[tuple[float, float]]) -> None:
        """From measured (PTQ, QAT) accuracies of whole schemes."""
        ref = self.probes.reference_point
        fractions = [
            min(1.0, max(0.0, (ref.qat - qat) / (ref.ptq - ptq)))
            for ptq, qat in observed
            if ref.ptq - ptq > 5 * self.noise_floor
        ]
        if fractions:
            self.kappa = float(np.median(fractions))

    def variants_of(self, precision: LayerPrecision) -> list[str]:
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
        p = min(max(self.probes.reference_point.qat, 1e-3), 1 - 1e-3)
        return math.sqrt(p * (1 - p) / self.samples)

    def predict(self, scheme: Scheme, ptq_top1: float) -> Prediction:
        floor = self.noise_floor
        per_layer = sum(
            max(0.0, self.probes.unrecoverable(layer, variant) - floor)
            for layer, precision in scheme.layers.items()
            for variant in self.variants_of(precision)
        )
        ptq_loss = max(0.0, self.probes.reference_point.ptq - ptq_top1)
        lost = max(per_layer, (self.kappa or 0.0) * ptq_loss)
        qat = max(0.0, self.probes.reference_point.qat - lost)
        necessity = max(0.0, qat - ptq_top1)
        p = min(max(ptq_top1, 1e-3), 1 - 1e-3)
        q = min(max(qat, 1e-3), 1 - 1e-3)
        noise = math.sqrt(p * (1 - p) / self.samples + q * (1 - q) / self.samples)
        sigma = math.sqrt(noise**2 + (self.relative_error * lost) ** 2)
        needs = necessity > self.tolerance
        z = abs(necessity - self.tolerance) / max(sigma, 1e-9)
        confidence = 0.5 * (1 + math.erf(z / math.sqrt(2)))
        return Prediction(necessity, qat, sigma, needs, confidence)

    def baseline_full_recovery(self, ptq_top1: float) -> float:
        """Baseline (a): QAT recovers everything, N = Acc_float - Acc_PTQ."""
        return max(0.0, self.probes.float_top1 - ptq_top1)

    def baseline_sum(self, scheme: Scheme) -> float:
        """Baseline (b): the sum of the per-layer probe N values."""
        return sum(
            self.probes.necessity(layer, variant)
            for layer, precision in scheme.layers.items()
            for variant in self.variants_of(precision)
        )


def random_schemes(names: list[str], count: int, seed: int, choices: list[str] | None = None) -> list[Scheme]:
    """Held-out mixed schemes: each layer drawn from `choices`, each scheme with at least
    one layer below w8a8 (all-w8a8 carries no information)."""
    rng = random.Random(seed)
    options = [LayerPrecision.from_shorthand(c) for c in (choices or ["w8a8", "w4a8", "w2a8", "w4a4", "w8a4"])]
    schemes: list[Scheme] = []
    seen: set[Scheme] = set()
    while len(schemes) < count:
        scheme = Scheme({n: rng.choice(options) for n in names})
        if scheme in seen or all(p == LayerPrecision(8, 8) for p in scheme.layers.values()):
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

    def to_json(self, float_top1: float) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "seconds": self.seconds,
            "stats": self.stats,
            "schemes": [
                {
                    "scheme": {k: v.label for k, v in s.layers.items()},
                    "measured": m.to_json(float_top1),
                    "predicted": p.to_json(),
                    "baseline_full_recovery": a,
                    "baseline_sum": b,
                }
                for s, m, p, a, b in zip(self.schemes, self.measured, self.predicted, self.baseline_a, self.baseline_b)
            ],
        }


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def validate_oracle(
    context: NecessityContext, prepared: Prepared, oracle: Oracle, count: int, epochs: int, workers: int, seed: int
) -> Validation:
    start = time.perf_counter()
    schemes = random_schemes(prepared.analysis.layer_names, count, seed)
    measured = measure_schemes(context, schemes, epochs, workers)
    # the model term of the oracle's uncertainty, fitted on what was just measured
    predicted = [oracle.predict(s, m.ptq) for s, m in zip(schemes, measured)]
    baseline_a = [oracle.baseline_full_recovery(m.ptq) for m in measured]
    baseline_b = [oracle.baseline_sum(s) for s in schemes]
    truth = [m.necessity for m in measured]
    needs = [n > oracle.tolerance for n in truth]

    def decision_accuracy(values: list[float]) -> float:
        return float(np.mean([(v > oracle.tolerance) == t for v, t in zip(values, needs)]))

    stats = {
        "spearman_oracle": _spearman([p.necessity for p in predicted], truth),
        "spearman_full_recovery": _spearman(baseline_a, truth),
        "spearman_sum_of_probes": _spearman(baseline_b, truth),
        "spearman_qat_accuracy": _spearman([p.qat_top1 for p in predicted], [m.qat for m in measured]),
        "mae_qat_accuracy": float(np.mean([abs(p.qat_top1 - m.qat) for p, m in zip(predicted, measured)])),
        "mae_necessity_oracle": float(np.mean([abs(p.necessity - t) for p, t in zip(predicted, truth)])),
        "decision_accuracy_oracle": decision_accuracy([p.necessity for p in predicted]),
        "decision_accuracy_full_recovery": decision_accuracy(baseline_a),
        "decision_accuracy_sum_of_probes": decision_accuracy(baseline_b),
        "mean_confidence": float(np.mean([p.confidence for p in predicted])),
    }
    return Validation(
        schemes, measured, predicted, baseline_a, baseline_b, oracle.tolerance, time.perf_counter() - start, stats
    )


@dataclass
class NecessityReport:
    model: str
    float_top1: float
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
            "float_top1": self.float_top1,
            "tolerance": self.oracle.tolerance,
            "probe_epochs": self.probes.epochs,
            "qat_epochs": self.qat_epochs,
            "probes": self.probes.to_json(),
            "validation": None if self.validation is None else self.validation.to_json(self.float_top1),
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
            "a": {k: v.label for k, v in schemes[i].layers.items()},
            "b": {k: v.label for k, v in schemes[j].layers.items()},
            "cost_a": costs[i],
            "cost_b": costs[j],
            "necessity_a": necessities[i],
            "necessity_b": necessities[j],
        }
        for _, i, j in pairs[:top]
    ]
