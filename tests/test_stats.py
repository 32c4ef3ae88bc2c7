from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mpqc.ranges import activation_range
from mpqc.stats import BINS, TensorStats


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), batches=st.integers(1, 6), scale=st.floats(0.01, 1000))
def test_streaming_equals_one_shot(seed, batches, scale):
    r = np.random.RandomState(seed)
    chunks = [r.randn(500).astype(np.float32) * scale * (i + 1) for i in range(batches)]
    streamed, once = TensorStats(), TensorStats()
    for chunk in chunks:
        streamed.update(chunk)
    data = np.concatenate(chunks)
    once.update(data)
    assert streamed.count == once.count == data.size
    assert (streamed.min, streamed.max) == (float(data.min()), float(data.max()))
    # the streamed histogram may have a larger radius only if a later batch forced it;
    # every value is counted exactly once and lies inside the range
    assert streamed.counts.sum() == data.size
    assert streamed.radius >= np.abs(data).max()


def test_memory_is_bounded():
    stats = TensorStats()
    for i in range(20):
        stats.update(np.full(10_000, 2.0**i, np.float32))
    assert stats.counts.shape == (BINS,)


def test_percentile_and_mse_clip_outliers_minmax_does_not():
    r = np.random.RandomState(0)
    data = np.concatenate([r.randn(100_000), [80.0]]).astype(np.float32)
    stats = TensorStats()
    stats.update(data)
    assert activation_range(stats, 8, False, "minmax")[1] == 80.0
    assert activation_range(stats, 8, False, "percentile")[1] < 10
    lo, hi = activation_range(stats, 4, False, "mse")
    assert hi < 40 and lo > -5  # the outlier is clipped; the bulk keeps its resolution
