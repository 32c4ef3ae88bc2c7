"""A `module:function` data source for tests: an iterator of batches."""

import numpy as np


def batches():
    for i in range(3):
        yield {"x": np.full((2, 2), i, np.float32)}


def raises():
    raise ValueError("the dataset server is down")


def returns_none():
    return None


def returns_int():
    return 3


NOT_CALLABLE = 42


def mixed_keys():
    yield {"input": np.zeros((2, 1, 16, 16), np.float32)}
    yield {"other": np.zeros((2, 1, 16, 16), np.float32)}
