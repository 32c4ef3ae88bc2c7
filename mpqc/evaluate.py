"""Accuracy in ONNX Runtime, the way the model will be deployed: top-1 against labels, and
label-free fidelity (top-1 agreement, SQNR, cosine) against the float model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from mpqc.data import Dataset
from mpqc.errors import MpqcError
from mpqc.runtime import run_batches

__all__ = ["Evaluation", "evaluate_session", "collect_outputs"]


@dataclass(frozen=True)
class Evaluation:
    samples: int
    top1: float | None = None
    agreement: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def collect_outputs(session: ort.InferenceSession, data: Dataset, batch_size: int = 64) -> np.ndarray:
    """The first output for every sample, concatenated."""
    name = session.get_outputs()[0].name
    parts = [out[0] for out in run_batches(session, data, [name], batch_size)]
    if not parts:
        raise MpqcError(f"data {data.name} gave no complete batch for evaluation")
    return np.concatenate(parts)


def evaluate_session(
    session: ort.InferenceSession, data: Dataset, reference: np.ndarray | None = None, batch_size: int = 64
) -> Evaluation:
    outputs = collect_outputs(session, data, batch_size).astype(np.float64)
    top1 = None
    if data.labels is not None and outputs.ndim == 2:
        labels = data.labels.reshape(-1)[: len(outputs)]
        top1 = float(np.mean(outputs.argmax(axis=1) == labels))
    if reference is None:
        return Evaluation(len(outputs), top1)
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    out = outputs.reshape(len(outputs), -1)
    noise = float(np.sum(np.square(ref - out)))
    signal = float(np.sum(np.square(ref)))
    sqnr = math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = float(np.mean(np.sum(ref * out, axis=1) / np.maximum(norms, 1e-30)))
    agreement = float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1))) if ref.shape[1] > 1 else None
    return Evaluation(len(outputs), top1, agreement, sqnr, cosine)
