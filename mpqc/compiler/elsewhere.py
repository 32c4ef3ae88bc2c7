"""The winner priced on the other measured CPU runtime: compile on `ort-cpu` also times the
emitted model on `openvino-cpu` where OpenVINO is installed, and the other way round, each
against the float model in one interleaved run. A scheme that is fast on one runtime may
not be on the other (their int8 kernels and fusions differ); the report says so."""

from __future__ import annotations

from typing import Any

from mpqc.errors import MpqcError
from mpqc.targets import get_target
from mpqc.targets.openvino_cpu import openvino_version
from mpqc.workload import Workload

__all__ = ["price_elsewhere"]

_OTHER = {"ort-cpu": "openvino-cpu", "openvino-cpu": "ort-cpu"}


def price_elsewhere(workload: Workload, payload: bytes, rounds: int = 50) -> dict[str, Any] | None:
    """{target, winner_ms, float_ms, ratio} on the other CPU runtime, or None where there is
    none (an analytic target, OpenVINO absent) or it cannot run the model (the reason)."""
    assert workload.target is not None
    other = _OTHER.get(workload.target.name)
    if other is None or (other == "openvino-cpu" and openvino_version() is None):
        return None
    threads = int(workload.target.info().get("threads", 1))
    target = get_target(other, threads=threads)
    float_payload = workload.prepared.proto.SerializeToString()
    try:
        float_time, winner_time = target.measure_interleaved([float_payload, payload], workload.sample_feed(), rounds)
    except (MpqcError, RuntimeError) as exc:  # OpenVINO raises RuntimeError on a model it cannot read
        return {"target": other, "error": str(exc).splitlines()[0][:200]}
    return {
        "target": other,
        "winner_ms": winner_time.median_s * 1e3,
        "float_ms": float_time.median_s * 1e3,
        "ratio_to_float": winner_time.median_s / max(float_time.median_s, 1e-12),
    }
