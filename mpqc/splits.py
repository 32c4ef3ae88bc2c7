"""Data splits: calibration/training, validation (to choose) and test (only reported).

One `--data` source is split deterministically (a fixed permutation, the same whatever the
seed) into disjoint parts: 60% calibration/training, 20% validation, 20% test. A separate
`--test-data` takes the test role and the source is split 75/25 into training and
validation; with `--val-data` as well, the whole source trains. Fewer than 10 samples
cannot be split honestly: every role then uses all of them, and `notes` says so. The
built-in `digits` has fixed splits (1047 train, 300 validation, 450 test).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpqc.data import DIGITS, Dataset, RawData, adapt_digits, read_source, to_dataset
from mpqc.errors import DataError
from mpqc.signature import InputSpec

__all__ = ["Splits", "DataSpec", "make_splits", "MIN_SPLIT_SAMPLES"]

DataSpec = str | os.PathLike[str] | Mapping[str, Any] | Dataset | None
#: below this many samples a source is not split (every role sees every sample)
MIN_SPLIT_SAMPLES = 10
_SPLIT_SEED = 20261129


@dataclass(frozen=True)
class Splits:
    """The three roles, each a Dataset; `notes` says what is shared or reused."""

    train: Dataset
    validation: Dataset
    test: Dataset
    source: str
    disjoint: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def calibration(self) -> Dataset:
        """Calibration uses the training samples."""
        return self.train

    def get(self, role: str) -> Dataset:
        if role in ("train", "calibration"):
            return self.train
        if role == "validation":
            return self.validation
        if role == "test":
            return self.test
        raise ValueError(f"unknown split {role!r}")

    def everything(self) -> Splits:
        """Every sample in every role (for evaluating on all of a source)."""
        if not self.disjoint:
            whole = self.train
        else:
            parts = [self.train, self.validation, self.test]
            inputs = {k: np.concatenate([p.inputs[k] for p in parts]) for k in self.train.inputs}
            labels = None
            if all(p.labels is not None for p in parts):
                labels = np.concatenate([p.labels for p in parts if p.labels is not None])
            whole = Dataset(inputs, labels, self.source)
        return Splits(whole, whole, whole, self.source, False, ("every sample of the source",))

    def describe(self) -> str:
        text = (
            f"calibration/training {len(self.train)}, validation {len(self.validation)}, test {len(self.test)} "
            f"samples from {self.source}"
        )
        return text + ("; disjoint" if self.disjoint else "; NOT disjoint: " + "; ".join(self.notes))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "train": {"name": self.train.name, "samples": len(self.train)},
            "validation": {"name": self.validation.name, "samples": len(self.validation)},
            "test": {"name": self.test.name, "samples": len(self.test)},
            "disjoint": self.disjoint,
            "notes": list(self.notes),
        }


def make_splits(
    data: DataSpec,
    specs_for: Any,
    *,
    validation: DataSpec = None,
    test: DataSpec = None,
) -> Splits:
    """Read and split. `specs_for(batch_axes)` gives the model's input specs for the batch
    axes a source declares (see `mpqc.runtime.input_specs`)."""
    if data is None or (isinstance(data, str) and data == DIGITS):
        if validation is not None or test is not None:
            raise DataError("digits has fixed splits; --val-data and --test-data go with your own --data")
        specs = specs_for({})
        return Splits(
            adapt_digits(specs, "train"),
            adapt_digits(specs, "validation"),
            adapt_digits(specs, "test"),
            "digits (fixed splits)",
            True,
        )
    main = _load(data, specs_for)
    val = _load(validation, specs_for) if validation is not None else None
    tst = _load(test, specs_for) if test is not None else None
    notes: list[str] = []
    if val is not None and tst is not None:
        return Splits(main, val, tst, _sources(main, val, tst), True)
    if tst is not None:
        fractions = (0.75, 0.25, 0.0)
    elif val is not None:
        fractions = (0.75, 0.0, 0.25)
    else:
        fractions = (0.6, 0.2, 0.2)
    if len(main) < MIN_SPLIT_SAMPLES:
        notes.append(
            f"{main.name} has {len(main)} samples, too few to split (at least {MIN_SPLIT_SAMPLES}): calibration, "
            "training, validation and test all use the same samples (in-sample numbers)"
        )
        parts = [main, main, main]
    else:
        parts = _split(main, fractions)
    train, v, t = parts[0], val or parts[1], tst or parts[2]
    return Splits(train, v, t, _sources(main, val, tst), not notes, tuple(notes))


def _load(spec: DataSpec, specs_for: Any) -> Dataset:
    assert spec is not None
    raw = read_source(spec)
    specs: Sequence[InputSpec] = specs_for(raw.batch_axes if isinstance(raw, RawData) else {})
    return to_dataset(raw, specs)


def _split(data: Dataset, fractions: tuple[float, float, float]) -> list[Dataset]:
    n = len(data)
    order = np.random.RandomState(_SPLIT_SEED).permutation(n)
    sizes = [int(round(f * n)) for f in fractions[1:]]
    sizes = [max(1, s) if f > 0 else 0 for s, f in zip(sizes, fractions[1:])]
    n_val, n_test = sizes
    n_train = n - n_val - n_test
    train = np.sort(order[:n_train])
    val = np.sort(order[n_train : n_train + n_val])
    test = np.sort(order[n_train + n_val :])
    return [
        data.subset(train, f"{data.name}[train]"),
        data.subset(val, f"{data.name}[validation]"),
        data.subset(test, f"{data.name}[test]"),
    ]


def _sources(main: Dataset, val: Dataset | None, test: Dataset | None) -> str:
    parts = [main.name]
    if val is not None:
        parts.append(f"validation {val.name}")
    if test is not None:
        parts.append(f"test {test.name}")
    return ", ".join(parts)
