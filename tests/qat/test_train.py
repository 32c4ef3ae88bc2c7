from __future__ import annotations

import numpy as np
import pytest

from mpqc.errors import MpqcError
from mpqc.qat import QatConfig, qat


@pytest.fixture(scope="module")
def w2a8(default_model):
    return qat(default_model, "w2a8", config=QatConfig(epochs=2))


def test_qat_beats_ptq_where_it_should(w2a8):
    assert w2a8.qat_eval.top1 > w2a8.ptq_eval.top1 + 0.2
    assert w2a8.necessity > 0.2


def test_torch_and_onnx_runtime_agree_within_half_a_point(w2a8):
    assert abs(w2a8.torch_top1 - w2a8.qat_eval.top1) <= 0.005


def test_w8a8_needs_no_qat(default_model):
    result = qat(default_model, "w8a8", config=QatConfig(epochs=1))
    assert abs(result.necessity) <= 0.01


def test_label_free_distillation_trains(default_model, tmp_path):
    from mpqc.data import digits_split

    images, _ = digits_split("train")
    from scipy.ndimage import zoom

    x = zoom(images, (1, 2, 2), order=1, grid_mode=True, mode="nearest")[:, None].astype(np.float32)
    path = tmp_path / "unlabelled.npz"
    np.savez(path, input=x)
    result = qat(default_model, "w2a8", str(path), config=QatConfig(epochs=1))
    assert result.loss == "distill" and result.qat_eval.top1 is None
    assert result.qat_eval.agreement > result.ptq_eval.agreement


def test_labels_required_when_asked(default_model, tmp_path):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, input=np.zeros((8, 1, 16, 16), np.float32))
    with pytest.raises(MpqcError, match="labels"):
        qat(default_model, "w4a8", str(path), config=QatConfig(epochs=1, loss="labels"))


def test_scheme_mismatch(default_model):
    with pytest.raises(MpqcError, match="unknown layer"):
        qat(default_model, {"layers": {"nope": "w4a8"}}, config=QatConfig(epochs=1))
    with pytest.raises(MpqcError):
        QatConfig(epochs=-1)
