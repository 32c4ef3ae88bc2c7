from __future__ import annotations

import pytest
from mpqc.models import zoo_path

from mpqc.scheme import Scheme
from mpqc.workload import Workload


@pytest.mark.parametrize("label", ["wfa4", "wfa2"])
def test_ptq_quality_of_float_weights_with_low_bit_activations(label):
    """ONNX Runtime fuses a float-weight Conv's 4- or 2-bit input into a QLinearConv it then
    refuses to load; the scheme is evaluated in 8-bit containers instead (same grid), as
    compile's candidates need."""
    workload = Workload.build(zoo_path("digits_cnn"), "digits")
    names = workload.prepared.analysis.layer_names
    low = workload.ptq_quality(Scheme.from_json({"default": label}, names))
    eight = workload.ptq_quality(Scheme.from_json({"default": "wfa8"}, names))
    assert 0.0 < low <= eight + 0.02
