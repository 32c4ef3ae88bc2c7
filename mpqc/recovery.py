"""What QAT will win back, learned from the QAT runs a search has already paid for.

Measured (benchmarks/RESULTS.md, issue 11): rule (a) "N = float - PTQ" ranks schemes at the
seed ceiling on our models, the probe-based oracle ranks no better and costs most of a
compile, and what rule (a) misses is the share of a scheme's PTQ loss that QAT leaves
unrecovered. So the probe-free predictor is rule (a) with that share, kappa, fitted on the
whole schemes QAT has run so far (none yet: kappa = 0, rule (a) itself), and an interval
that says how sure it is: the spread of the observed shares (shrunk towards a wide prior
while few runs are known) times the scheme's PTQ loss, plus the measure's own sampling
noise. A decision whose interval straddles the tolerance is "uncertain", not a guess."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import lsq_linear

from mpqc.precision import FLOAT, Precision
from mpqc.scheme import Scheme

__all__ = [
    "LossSplit",
    "Prediction",
    "Predictor",
    "RecoveryModel",
    "SplitRecoveryModel",
    "activations_only",
    "decide",
    "sampling_noise",
    "Z",
]

#: interval half-width in standard deviations (two-sided 95% under a normal model)
Z = 1.96


@dataclass(frozen=True)
class Prediction:
    """Predicted QAT necessity N and QAT quality of one scheme, with their uncertainty and
    the decision: "qat" (N surely above the tolerance), "ptq" (surely not), "uncertain"."""

    necessity: float
    qat_quality: float
    sigma: float
    needs_qat: bool
    confidence: float
    decision: str = ""

    @property
    def low(self) -> float:
        return max(0.0, self.necessity - Z * self.sigma)

    @property
    def high(self) -> float:
        return self.necessity + Z * self.sigma

    def to_json(self) -> dict[str, Any]:
        return {
            "necessity": self.necessity,
            "interval": [self.low, self.high],
            "qat_quality": self.qat_quality,
            "sigma": self.sigma,
            "needs_qat": self.needs_qat,
            "confidence": self.confidence,
            "decision": self.decision,
        }


class Predictor(Protocol):
    """What a QAT policy asks of a necessity predictor."""

    def predict(self, scheme: Scheme, ptq_quality: float) -> Prediction: ...

    def refit(self, observed: list[tuple[float, float]]) -> None: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


def decide(necessity: float, sigma: float, tolerance: float) -> tuple[str, float]:
    """The decision for a predicted N with standard deviation `sigma`, and the probability
    (normal model) that "N > tolerance" is answered right."""
    z = abs(necessity - tolerance) / max(sigma, 1e-9)
    confidence = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    if necessity - Z * sigma > tolerance:
        return "qat", confidence
    if necessity + Z * sigma <= tolerance:
        return "ptq", confidence
    return "uncertain", confidence


def sampling_noise(quality: float, samples: int, per_sample_binary: bool) -> float:
    """One standard error of a quality measured on `samples` samples, when each sample
    scores 0 or 1 (top-1, agreement); 0 for a continuous measure (cosine), whose noise then
    shows only in the spread of the observed shares."""
    if not per_sample_binary or samples <= 0:
        return 0.0
    p = min(max(quality, 1e-3), 1 - 1e-3)
    return math.sqrt(p * (1 - p) / samples)


@dataclass
class RecoveryModel:
    """QAT quality = float - kappa * (float - PTQ), kappa fitted on paid QAT runs."""

    float_quality: float
    tolerance: float = 0.01
    #: one standard error of a measured quality (`sampling_noise`)
    noise: float = 0.0
    #: spread of kappa before any run: kappa lies in [0, 1] and nothing is known yet
    prior_sd: float = 0.3
    kappa: float = 0.0
    kappa_sd: float = field(init=False)
    observed: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kappa_sd = self.prior_sd

    def refit(self, observed: list[tuple[float, float]]) -> None:
        """From measured (PTQ, QAT) qualities of whole schemes. Only schemes that lost
        clearly more than the noise with PTQ say anything about the share."""
        self.observed = list(observed)
        floor = max(2 * self.noise, 1e-6)
        shares = [
            min(1.0, max(0.0, (self.float_quality - qat) / (self.float_quality - ptq)))
            for ptq, qat in observed
            if self.float_quality - ptq > floor
        ]
        if not shares:
            return
        shares.sort()
        n = len(shares)
        self.kappa = shares[n // 2] if n % 2 else 0.5 * (shares[n // 2 - 1] + shares[n // 2])
        spread = sum((s - self.kappa) ** 2 for s in shares)
        self.kappa_sd = math.sqrt((self.prior_sd**2 + spread) / (n + 1))  # the prior counts as one run

    def predict(self, scheme: Scheme | None, ptq_quality: float) -> Prediction:
        """`scheme` is not used: the share is the same for every scheme."""
        loss = max(0.0, self.float_quality - ptq_quality)
        qat = self.float_quality - self.kappa * loss
        necessity = max(0.0, qat - ptq_quality)
        sigma = math.sqrt(2 * self.noise**2 + (self.kappa_sd * loss) ** 2)
        decision, confidence = decide(necessity, sigma, self.tolerance)
        return Prediction(necessity, qat, sigma, necessity > self.tolerance, confidence, decision)

    def describe(self) -> str:
        return f"kappa {self.kappa:.2f} +- {self.kappa_sd:.2f} from {len(self.observed)} QAT run(s)"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "float - kappa * (float - PTQ)",
            "kappa": self.kappa,
            "kappa_sd": self.kappa_sd,
            "noise": self.noise,
            "runs": len(self.observed),
        }


@dataclass(frozen=True)
class LossSplit:
    """A scheme's PTQ loss in two parts, from one extra PTQ evaluation (the scheme with float
    weights): what its activations cost, float - PTQ(activations only), and what its weights
    add on top, PTQ(activations only) - PTQ. They add up to the PTQ loss."""

    weights: float
    activations: float

    @classmethod
    def of(cls, float_quality: float, ptq: float, activations_only: float) -> LossSplit:
        return cls(activations_only - ptq, float_quality - activations_only)


def activations_only(scheme: Scheme) -> Scheme:
    """`scheme` with float weights and its activations as they were: the PTQ point that
    splits a scheme's PTQ loss (`LossSplit`). A weight-only layer (nbits) becomes float; a
    dynamic one stays as it is (its two halves are one kernel)."""

    def keep(p: Precision) -> Precision:
        if p.form == "nbits":
            return FLOAT
        if p.form == "dynamic" or p.w_bits is None:
            return p
        return dataclasses.replace(p, w_bits=None)

    return Scheme({name: keep(p) for name, p in scheme.layers.items()})


@dataclass
class SplitRecoveryModel:
    """QAT quality = float - kw * weight part - ka * activation part of the PTQ loss.

    Why (RESULTS.md, issue 11): on two pretrained kit models the activation part anti-ranks
    what QAT wins back and the weight part ranks it better than the whole loss (within the
    noise); one share for both (`RecoveryModel`) ranks exactly like rule (a). Measured since:
    closer N than the one share on a kit model, no better ranking, and the same compile
    decisions (the `predicted-split` policy). The two shares are fitted by
    bounded least squares on the paid runs' unrecovered losses, both held towards the
    one-share kappa by a prior that weighs as one typical run, so with no or few runs this
    is `RecoveryModel`."""

    float_quality: float
    tolerance: float = 0.01
    noise: float = 0.0
    prior_sd: float = 0.3
    #: fitted: the unrecovered share of the weight part and of the activation part
    shares: tuple[float, float] = field(init=False, default=(0.0, 0.0))
    share_sd: float = field(init=False)
    base: RecoveryModel = field(init=False)
    observed: list[tuple[float, float, LossSplit]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = RecoveryModel(self.float_quality, self.tolerance, self.noise, self.prior_sd)
        self.share_sd = self.prior_sd

    def refit(self, observed: list[tuple[float, float, LossSplit]]) -> None:
        """From measured (PTQ, QAT, split) of whole schemes; like `RecoveryModel.refit`, only
        schemes that lost clearly more than the noise count."""
        self.observed = list(observed)
        self.base.refit([(ptq, qat) for ptq, qat, _ in observed])
        kappa = self.base.kappa
        floor = max(2 * self.noise, 1e-6)
        used = [(ptq, qat, split) for ptq, qat, split in observed if self.float_quality - ptq > floor]
        if not used:
            self.shares, self.share_sd = (kappa, kappa), self.base.kappa_sd
            return
        design = np.array([[split.weights, split.activations] for _, _, split in used])
        unrecovered = np.array([self.float_quality - qat for _, qat, _ in used])
        losses = np.array([self.float_quality - ptq for ptq, _, _ in used])
        # the prior's two rows together weigh as much as one typical run's row
        typical = float(np.sqrt(np.mean(np.sum(design**2, axis=1)) / 2))
        system = np.vstack([design, typical * np.eye(2)])
        target = np.concatenate([unrecovered, [typical * kappa, typical * kappa]])
        solution = lsq_linear(system, target, bounds=(0.0, 1.0)).x
        self.shares = (float(solution[0]), float(solution[1]))
        relative = (unrecovered - design @ solution) / losses
        self.share_sd = math.sqrt((self.prior_sd**2 + float(np.sum(relative**2))) / (len(used) + 1))

    def predict(self, ptq_quality: float, split: LossSplit) -> Prediction:
        loss = max(0.0, self.float_quality - ptq_quality)
        kw, ka = self.shares
        qat = min(self.float_quality, self.float_quality - kw * split.weights - ka * split.activations)
        necessity = max(0.0, qat - ptq_quality)
        sigma = math.sqrt(2 * self.noise**2 + (self.share_sd * loss) ** 2)
        decision, confidence = decide(necessity, sigma, self.tolerance)
        return Prediction(necessity, max(qat, ptq_quality), sigma, necessity > self.tolerance, confidence, decision)

    def describe(self) -> str:
        kw, ka = self.shares
        runs = len(self.observed)
        return f"shares weights {kw:.2f}, activations {ka:.2f} (+- {self.share_sd:.2f}) from {runs} QAT run(s)"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "float - kw * weight part - ka * activation part",
            "shares": {"weights": self.shares[0], "activations": self.shares[1]},
            "share_sd": self.share_sd,
            "noise": self.noise,
            "runs": len(self.observed),
        }
