from __future__ import annotations

import numpy as np
import pytest

from mpqc.data import Dataset, adapt_digits, digits_split, read_source, to_dataset
from mpqc.errors import DataError, UserCodeError
from mpqc.signature import InputSpec

IMG = [InputSpec("input", np.dtype(np.float32), (None, 3, 32, 32))]


def load(spec, specs):
    return to_dataset(read_source(spec), specs)


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
    data = load(str(path), IMG)
    assert len(data) == 4 and data.labels.tolist() == [0, 1, 2, 3]


def test_batch_axis_moves_to_the_front_and_back(tmp_path):
    specs = [InputSpec("x", np.dtype(np.float32), (None, 4)), InputSpec("state", np.dtype(np.float32), (2, None, 3), 1)]
    path = tmp_path / "d.npz"
    state = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    np.savez(path, x=np.zeros((5, 4), np.float32), state=state)
    data = load(str(path), specs)
    assert data.inputs["state"].shape == (5, 2, 3)
    assert np.array_equal(data.inputs["state"][1], state[:, 1])


def test_declared_batch_axes_are_read(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 4), np.float32), __batch_axes__=np.array(["state=1"]))
    raw = read_source(str(path))
    assert raw.batch_axes == {"state": 1} and "__batch_axes__" not in raw.arrays


@pytest.mark.parametrize(
    "word,array",
    [
        ("samples of shape", np.zeros((4, 3, 16, 16), np.float32)),
        ("dtype", np.zeros((4, 3, 32, 32), np.complex64)),
        ("NaN or Inf", np.full((4, 3, 32, 32), np.nan, np.float32)),
        ("dimensions", np.zeros((4, 32, 32), np.float32)),
    ],
)
def test_wrong_shape_dtype_and_nan_are_errors(tmp_path, word, array):
    path = tmp_path / "bad.npz"
    np.savez(path, input=array)
    with pytest.raises(DataError, match=word):
        load(str(path), IMG)


def test_module_function_data():
    data = load("tests_data_source:batches", [InputSpec("x", np.dtype(np.float32), (None, 2))])
    assert len(data) == 6


def test_user_code_that_raises_is_reported_as_such():
    with pytest.raises(UserCodeError, match="your data function tests_data_source:raises raised ValueError"):
        read_source("tests_data_source:raises")


@pytest.mark.parametrize("func", ["returns_none", "returns_int"])
def test_user_code_returning_nonsense(func):
    with pytest.raises(DataError, match="must return a dict"):
        read_source(f"tests_data_source:{func}")


def test_unknown_data_spec():
    with pytest.raises(DataError, match="unknown data"):
        read_source("imagenet")


def test_digest_changes_with_labels():
    x = {"x": np.zeros((3, 2), np.float32)}
    assert Dataset(x, np.array([0, 1, 2]), "a").digest() != Dataset(x, np.array([0, 1, 1]), "a").digest()
    assert Dataset(x, None, "a").digest() == Dataset(dict(x), None, "b").digest()
