from __future__ import annotations

import numpy as np
import pytest

from mpqc.errors import DataError
from mpqc.signature import InputSpec
from mpqc.splits import MIN_SPLIT_SAMPLES, make_splits

SPECS = [InputSpec("x", np.dtype(np.float32), (None, 2))]


def specs_for(_axes):
    return SPECS


def _source(n: int, offset: int = 0) -> dict[str, np.ndarray]:
    return {"x": (np.arange(n, dtype=np.float32)[:, None] + offset).repeat(2, axis=1)}


def _values(dataset) -> set[float]:
    return set(dataset.inputs["x"][:, 0].tolist())


def test_one_source_is_split_disjoint_and_deterministic():
    a = make_splits(_source(50), specs_for)
    b = make_splits(_source(50), specs_for)
    sizes = (len(a.train), len(a.validation), len(a.test))
    assert sizes == (30, 10, 10) and a.disjoint
    assert not (_values(a.train) & _values(a.validation)) and not (_values(a.train) & _values(a.test))
    assert _values(a.train) | _values(a.validation) | _values(a.test) == set(range(50))
    assert _values(a.test) == _values(b.test)
    assert "disjoint" in a.describe()


def test_separate_test_file_takes_the_test_role():
    splits = make_splits(_source(40), specs_for, test=_source(7, offset=1000))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (30, 10, 7)
    assert min(_values(splits.test)) >= 1000


def test_separate_validation_file_splits_the_rest_into_train_and_test():
    splits = make_splits(_source(40), specs_for, validation=_source(5, offset=500))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (30, 5, 10)


def test_too_few_samples_are_reused_and_said():
    splits = make_splits(_source(MIN_SPLIT_SAMPLES - 1), specs_for)
    assert not splits.disjoint and len(splits.test) == MIN_SPLIT_SAMPLES - 1
    assert "too few to split" in splits.notes[0] and "NOT disjoint" in splits.describe()


def test_digits_keeps_its_fixed_splits_and_refuses_extra_files():
    specs = [InputSpec("input", np.dtype(np.float32), (None, 1, 16, 16))]
    splits = make_splits(None, lambda _: specs)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (1047, 300, 450)
    with pytest.raises(DataError, match="fixed splits"):
        make_splits("digits", lambda _: specs, test=_source(3))
