"""`--calib-method auto`: the activation range method chosen per tensor by the output
fidelity it gives.

For one activation bit width B, on the uniform scheme w8aB (weights held at 8 bits so their
error does not mask the ranges'), against the float model on a few validation samples:

1. every method (min-max, percentile, MSE) for all tensors at once; the best is the start;
2. tensor by tensor, where the methods' ranges disagree most first, each other method is
   tried and kept if the output SQNR improves;

within a fixed number of evaluations (each one emits, loads and runs the model), so the
choice is the same on any machine. Tensors whose methods agree within 2% are not tried.

`--weight-method auto` likewise picks, per weight width below 8 bits, min-max or MSE scales
for all layers by the output SQNR of the weight-only scheme wBaf: neither wins everywhere
(on the real-model kit at w4a8, MSE keeps a MobileNet classifier's agreement at 0.94 where
min-max gives 0.69, while min-max keeps a CRNN's output cosine at 0.92 where MSE gives
0.87)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpqc.data import Dataset
from mpqc.emit import emit
from mpqc.frontend import Prepared
from mpqc.precision import Precision
from mpqc.quality import sqnr
from mpqc.ranges import ACTIVATION_METHODS, range_of
from mpqc.recipe import WEIGHTS_KEY, Recipe
from mpqc.runtime import Outputs, Runner, make_session
from mpqc.scheme import Scheme
from mpqc.signature import InputSpec
from mpqc.stats import Calibration

__all__ = [
    "CalibrationChoice",
    "WeightChoice",
    "choose_methods",
    "choose_weight_method",
    "DEFAULT_EVALUATIONS",
    "CHOICE_SAMPLES",
]

#: evaluations per activation bit width
DEFAULT_EVALUATIONS = 12
#: validation samples each evaluation runs
CHOICE_SAMPLES = 8


@dataclass(frozen=True)
class CalibrationChoice:
    """The methods chosen for one activation bit width, and what they gave."""

    bits: int
    methods: dict[str, str]
    start: str
    evaluations: int
    sqnr_db: float
    start_sqnr_db: float

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for method in self.methods.values():
            counts[method] = counts.get(method, 0) + 1
        parts = ", ".join(f"{m} {n}" for m, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return (
            f"{self.bits}-bit activation ranges chosen per tensor ({parts}) in {self.evaluations} evaluations: "
            f"output SQNR {self.sqnr_db:.1f} dB ({self.start} for all: {self.start_sqnr_db:.1f} dB)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "start": self.start,
            "evaluations": self.evaluations,
            "sqnr_db": self.sqnr_db,
            "start_sqnr_db": self.start_sqnr_db,
            "methods": dict(self.methods),
        }


@dataclass(frozen=True)
class WeightChoice:
    """The weight scale method chosen for one weight width, and the SQNR of each method."""

    bits: int
    method: str
    sqnr_db: dict[str, float]

    def summary(self) -> str:
        scores = ", ".join(f"{m} {v:.1f} dB" for m, v in self.sqnr_db.items())
        return f"{self.bits}-bit weight scales: {self.method} (output SQNR of w{self.bits}af: {scores})"

    def to_json(self) -> dict[str, Any]:
        return {"bits": self.bits, "method": self.method, "sqnr_db": dict(self.sqnr_db)}


def _fidelity(
    prepared: Prepared,
    scheme: Scheme,
    calibration: Calibration,
    recipe: Recipe,
    specs: Sequence[InputSpec],
    data: Dataset,
    reference: Outputs,
    per_sample: bool,
) -> float:
    """Output SQNR of one scheme and recipe against the float outputs (a perfect match
    counts as 1e9 dB, so comparisons stay finite)."""
    payload = emit(prepared, scheme, calibration, recipe).payload()
    runner = Runner(make_session(payload), specs)
    runner.per_sample = per_sample
    value = sqnr(runner.run(data), reference)
    return value if math.isfinite(value) else 1e9


def choose_weight_method(
    prepared: Prepared,
    calibration: Calibration,
    recipe: Recipe,
    specs: Sequence[InputSpec],
    data: Dataset,
    reference: Outputs,
    bits: int,
    per_sample: bool = False,
    say: Callable[[str], None] | None = None,
) -> WeightChoice:
    """Min-max or MSE weight scales for `bits`-bit weights, by the output SQNR of the
    weight-only uniform scheme (ties go to min-max, the first listed)."""
    scheme = Scheme.uniform(prepared.analysis.layer_names, Precision(bits, None))
    scores = {}
    for method in ("minmax", "mse"):
        trial = recipe.with_choices({**recipe.chosen, (WEIGHTS_KEY, bits): method})
        scores[method] = _fidelity(prepared, scheme, calibration, trial, specs, data, reference, per_sample)
    best = max(scores, key=lambda m: scores[m])
    choice = WeightChoice(bits, best, scores)
    if say is not None:
        say(f"weight method auto: {choice.summary()}")
    return choice


def choose_methods(
    prepared: Prepared,
    calibration: Calibration,
    recipe: Recipe,
    specs: Sequence[InputSpec],
    data: Dataset,
    reference: Outputs,
    bits: int,
    evaluations: int = DEFAULT_EVALUATIONS,
    per_sample: bool = False,
    say: Callable[[str], None] | None = None,
) -> CalibrationChoice:
    """Methods per tensor for `bits`-bit activations; `reference` is the float model's outputs
    on `data`."""
    scheme = Scheme.uniform(prepared.analysis.layer_names, Precision(8, bits))
    probe = emit(prepared, scheme, calibration, recipe.with_choices({}))
    tensors = [t for t, b in probe.ranges if b == bits]
    used = 0

    def fidelity(methods: dict[str, str]) -> float:
        nonlocal used
        used += 1
        choices = recipe.with_choices({**recipe.chosen, **{(t, bits): m for t, m in methods.items()}})
        return _fidelity(prepared, scheme, calibration, choices, specs, data, reference, per_sample)

    scores = {m: fidelity({t: m for t in tensors}) for m in ACTIVATION_METHODS}
    start = max(ACTIVATION_METHODS, key=lambda m: (scores[m], -ACTIVATION_METHODS.index(m)))
    current = {t: start for t in tensors}
    best = scores[start]
    for tensor in _by_disagreement(calibration, tensors, bits, recipe.percentile):
        if used >= evaluations:
            break
        for method in ACTIVATION_METHODS:
            if method == current[tensor] or used >= evaluations:
                continue
            trial = {**current, tensor: method}
            score = fidelity(trial)
            if score > best + 0.01:  # a hundredth of a dB: better, not noise
                current, best = trial, score
    if say is not None:
        say(f"calibration auto: {bits}-bit activations, {used} evaluations, SQNR {best:.1f} dB")
    return CalibrationChoice(bits, current, start, used, best, scores[start])


def _by_disagreement(calibration: Calibration, tensors: Sequence[str], bits: int, percentile: float) -> list[str]:
    """Tensors whose methods' ranges differ by more than 2%, most different first."""
    spread = {}
    for tensor in tensors:
        widths = []
        for method in ACTIVATION_METHODS:
            lo, hi = range_of(calibration, tensor, bits, False, method, percentile)
            widths.append(max(hi - lo, 1e-12))
        ratio = math.log(max(widths) / min(widths))
        if ratio > math.log(1.02):
            spread[tensor] = ratio
    return sorted(spread, key=lambda t: (-spread[t], t))
