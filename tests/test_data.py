from __future__ import annotations

import numpy as np
import pytest

from mpqc.data import adapt_digits, digits_split, load_data
from mpqc.errors import MpqcError
from mpqc.runtime import InputSpec

IMG = [InputSpec("input", np.dtype(np.float32), (None, 3, 32, 32))]


def test_digits_splits_are_fixed_and_disjoint():
    test, _ = digits_split("test")
    val, _ = digits_split("validation")
    train, _ = digits_split("train")
    assert len(test) == 450 and len(val) == 300 and len(test) + len(val) + len(train) == 1797
    assert np.array_equal(digits_split("test")[0], test)


def test_digits_adapts_to_image_flat_and_token_inputs():
    assert adapt_digits(IMG, "test").inputs["input"].shape == (450, 3, 32, 32)
    flat = [InputSpec("x", np.dtype(np.float32), (None, 64))]
    assert adapt_digits(flat, "test").inputs["x"].shape == (450, 64)
    tokens = [InputSpec("x", np.dtype(np.float32), (None, 8, 8))]
    assert adapt_digits(tokens, "test").inputs["x"].shape == (450, 8, 8)


def test_npz_with_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, input=np.zeros((4, 3, 32, 32), np.float32), labels=np.arange(4))
    data = load_data(str(path), IMG)
    assert len(data) == 4 and data.labels.tolist() == [0, 1, 2, 3]


def test_wrong_shape_dtype_and_nan_are_errors(tmp_path):
    cases = {
        "shape": np.zeros((4, 3, 16, 16), np.float32),
        "dtype": np.zeros((4, 3, 32, 32), np.int64),
        "NaN": np.full((4, 3, 32, 32), np.nan, np.float32),
    }
    for word, array in cases.items():
        path = tmp_path / f"{word}.npz"
        np.savez(path, input=array)
        with pytest.raises(MpqcError, match=word if word != "NaN" else "NaN or Inf"):
            load_data(str(path), IMG)


def test_module_function_data():
    data = load_data("tests_data_source:batches", [InputSpec("x", np.dtype(np.float32), (None, 2))])
    assert len(data) == 6


def test_unknown_data_spec():
    with pytest.raises(MpqcError, match="unknown data"):
        load_data("imagenet", IMG)
