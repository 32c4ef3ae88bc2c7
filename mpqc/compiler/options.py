"""Compile settings: validated when made, so a bad value fails before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpqc.errors import OptionError
from mpqc.executor import DEFAULT_RETRIES, ExecutorSpec

__all__ = ["CompileOptions", "POLICIES", "DEFAULT_BUDGET", "DEFAULT_TARGET", "MAX_DROP_BUDGET"]

DEFAULT_BUDGET = "latency=0.5x"
#: the bound of a quality-constrained compile (`max_drop`) given no budget: never slower than float
MAX_DROP_BUDGET = "latency=1xfloat"
DEFAULT_TARGET = "bitserial"
#: how compile decides where QAT runs (see `mpqc.compiler.policies`)
POLICIES = ("predicted", "always", "never", "ptq-rule", "probed", "predicted-split", "short-qat")


def _count(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OptionError(f"{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True)
class CompileOptions:
    """How compile searches and where it spends QAT. Validated on construction (`OptionError`)."""

    #: quality (fraction; 0.01 = 1 point) QAT must add over PTQ to be worth a run
    qat_tolerance: float = 0.01
    max_qat_runs: int = 4
    qat_epochs: int = 3
    #: short-qat: the epochs of the short run every fitting candidate gets
    short_epochs: int = 1
    probe_epochs: int = 1
    #: relative QAT learning rate (see `mpqc.training.config.QatConfig`)
    lr: float = 0.05
    seed: int = 0
    workers: int | None = None
    levels: int = 6
    qat_policy: str = "predicted"
    #: ptq-rule: QAT the best k candidates (by PTQ quality) the rule selects; short-qat: the
    #: best k by short QAT go on to the full run
    top_k: int = 2
    #: predicted: QAT runs per round before the predictor is refitted (not the worker count:
    #: the answer must not depend on how many workers run it)
    round_size: int = 2
    progress: bool = True
    #: reuse sensitivity and probes of an earlier run on the same model, data and space
    use_cache: bool = True
    #: validation samples the per-layer sensitivity pass runs (candidates use all of them)
    sensitivity_samples: int = 32
    #: quality-constrained mode: minimise the budget's first metric subject to validation
    #: quality >= float - max_drop (a fraction; 0.01 = 1 point); None: maximise quality
    max_drop: float | None = None
    #: where jobs run: "local" (`workers` processes) or "ray" (on the cluster at `ray_address`)
    executor: str = "local"
    ray_address: str | None = None
    #: times a job whose worker died is run again
    job_retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if not (isinstance(self.qat_tolerance, int | float) and math.isfinite(self.qat_tolerance)):
            raise OptionError(f"--qat-tolerance must be a finite number, got {self.qat_tolerance!r}")
        if self.qat_tolerance < 0:
            raise OptionError(f"--qat-tolerance must be >= 0, got {self.qat_tolerance * 100:g} points")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise OptionError(f"--lr must be a positive number, got {self.lr!r}")
        _count("--max-qat-runs", self.max_qat_runs, 0)
        _count("--epochs", self.qat_epochs, 1)
        _count("--probe-epochs", self.probe_epochs, 1)
        _count("--short-epochs", self.short_epochs, 1)
        _count("--levels", self.levels, 1)
        _count("--top-k", self.top_k, 0)
        _count("round_size", self.round_size, 1)
        _count("--sensitivity-samples", self.sensitivity_samples, 1)
        _count("--seed", self.seed, 0)
        self.executor_spec()  # raises on a bad executor, worker count, address or retry count
        if self.max_drop is not None and not (
            isinstance(self.max_drop, int | float) and math.isfinite(self.max_drop) and 0 <= self.max_drop <= 1
        ):
            raise OptionError(f"--max-drop must be between 0 and 100 points, got {self.max_drop!r}")
        if self.qat_policy not in POLICIES:
            raise OptionError(f"unknown QAT policy {self.qat_policy!r}; use one of {', '.join(POLICIES)}")

    def executor_spec(self) -> ExecutorSpec:
        """Where this compile's jobs run."""
        return ExecutorSpec(self.executor, self.workers, self.ray_address, self.job_retries)
