"""The one quality measure every decision uses, and the evaluation reports built on it.

Measures (all fractions, higher is better; "points" are hundredths):

- ``top1``: accuracy against labels. Labels are checked: one integer class per sample in
  range; one-hot rows are converted.
- ``agreement``: how often the quantized model's argmax equals the float model's, on the
  classifier output (per sample shape ``(C,)``). For outputs with more axes (sequences,
  CTC logits) the argmax is over the last axis and every position counts.
- ``cosine``: the mean over samples of the cosine similarity between the quantized and the
  float outputs (each sample's output flattened), averaged over the model's outputs; an
  output of one value per sample is compared as one vector over the samples. The
  label-free measure for detectors, embeddings and several outputs.

`choose_measure` picks ``top1`` when there are labels, ``agreement`` when the model's only
output is classifier-shaped, ``cosine`` otherwise (a vector beside other outputs is as often
an embedding, e.g. a transformer's pooled output, as class scores); `--metric` overrides it. Every number names its
measure and its split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mpqc.errors import DataError
from mpqc.runtime import Outputs

__all__ = ["MEASURES", "QualityMeasure", "Evaluation", "choose_measure", "check_labels", "evaluate_outputs", "sqnr"]

MEASURES = ("top1", "agreement", "cosine")
_DESCRIPTIONS = {
    "top1": "top-1 accuracy against the labels",
    "agreement": "top-1 agreement with the float model",
    "cosine": "mean cosine similarity of the outputs to the float model's",
}


def _classifier_output(outputs: Outputs) -> int | None:
    """Index of the first output whose samples are a vector of two or more scores."""
    for i, out in enumerate(outputs):
        per_sample = [d for d in out.shape[1:] if d != 1]
        if len(per_sample) == 1 and per_sample[0] >= 2:
            return i
    return None


def _scores(array: np.ndarray) -> np.ndarray:
    """Samples x positions x classes: singleton axes dropped, classes last."""
    n = array.shape[0]
    squeezed = array.reshape(n, *[d for d in array.shape[1:] if d != 1]) if array.ndim > 1 else array[:, None]
    if squeezed.ndim == 1:
        squeezed = squeezed[:, None]
    return squeezed.reshape(n, -1, squeezed.shape[-1])


@dataclass(frozen=True)
class QualityMeasure:
    """What "quality" means for this model and data; `output` is the output it reads
    (top1/agreement), `classes` its class count."""

    name: str
    output: int = 0
    classes: int | None = None

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.name]

    @property
    def needs_labels(self) -> bool:
        return self.name == "top1"

    @property
    def per_sample_binary(self) -> bool:
        """Each sample scores 0 or 1 (its sampling noise is then binomial)."""
        return self.name in ("top1", "agreement")

    def score(self, outputs: Outputs, reference: Outputs | None, labels: np.ndarray | None) -> float:
        if self.name == "top1":
            if labels is None:
                raise DataError("the top1 measure needs labels")
            predicted = _scores(outputs[self.output]).argmax(-1)[:, 0]
            return float(np.mean(predicted == labels[: len(predicted)]))
        if reference is None:
            raise ValueError(f"{self.name} needs the float model's outputs")
        if self.name == "agreement":
            ours, theirs = _scores(outputs[self.output]), _scores(reference[self.output])
            return float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))
        return mean_cosine(outputs, reference)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "output": self.output, "classes": self.classes}


def mean_cosine(outputs: Outputs, reference: Outputs) -> float:
    """Per-sample cosine averaged over samples, then over outputs. An output of one value per
    sample (a score, a probability) is compared as one vector over the samples instead: the
    cosine of two scalars is only their sign agreement."""
    values = []
    for out, ref in zip(outputs, reference):
        rows = len(out) if out.size > len(out) else 1
        a = out.reshape(rows, -1).astype(np.float64)
        b = ref.reshape(rows, -1).astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        same = np.all(a == b, axis=1)
        cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-300), 0.0)
        values.append(float(np.mean(np.where(same, 1.0, cos))))
    return float(np.mean(values))


def check_labels(labels: np.ndarray, classes: int | None, where: str) -> np.ndarray:
    """One integer class index per sample, in range; one-hot rows become indices."""
    array = np.asarray(labels)
    if array.ndim == 2:
        if classes is not None and array.shape[1] != classes:
            raise DataError(f"{where}: labels have {array.shape[1]} columns, the model has {classes} classes")
        if not (np.isin(array, (0, 1)).all() and (array.sum(axis=1) == 1).all()):
            raise DataError(f"{where}: 2-D labels must be one-hot rows (a single 1 per row)")
        array = array.argmax(axis=1)
    if array.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D class indices, got shape {tuple(array.shape)}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.all(array == np.round(array)):
            raise DataError(f"{where}: labels must be integer class indices, got fractional values")
    elif array.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if len(array) and array.min() < 0:
        raise DataError(f"{where}: labels must be >= 0, got {int(array.min())}")
    if classes is not None and len(array) and array.max() >= classes:
        raise DataError(f"{where}: label {int(array.max())} is out of range for a model with {classes} classes")
    return array


def choose_measure(requested: str | None, reference: Outputs, labels: np.ndarray | None, where: str) -> QualityMeasure:
    """The measure for this model's outputs (`reference`: the float model's) and labels."""
    if requested is not None and requested not in MEASURES:
        raise DataError(f"unknown metric {requested!r}; use one of {', '.join(MEASURES)}")
    classifier = _classifier_output(reference)
    classes = None if classifier is None else _scores(reference[classifier]).shape[-1]
    sole_classifier = classifier is not None and len(reference) == 1
    name = requested or ("top1" if labels is not None else "agreement" if sole_classifier else "cosine")
    if name == "top1":
        if labels is None:
            raise DataError(f"metric top1 needs labels; {where} has none (use agreement or cosine)")
        if classifier is None:
            raise DataError(
                f"metric top1 needs a classifier output (one score per class); this model has outputs "
                f"{[tuple(o.shape[1:]) for o in reference]}"
            )
        return QualityMeasure("top1", classifier, classes)
    if name == "agreement":
        if classifier is None:
            shaped = [i for i, o in enumerate(reference) if o.ndim >= 2 and o.shape[-1] >= 2]
            if not shaped:
                raise DataError(
                    f"metric agreement needs an output with a class axis; outputs are "
                    f"{[tuple(o.shape[1:]) for o in reference]}"
                )
            return QualityMeasure("agreement", shaped[0], int(reference[shaped[0]].shape[-1]))
        return QualityMeasure("agreement", classifier, classes)
    return QualityMeasure("cosine")


@dataclass(frozen=True)
class Evaluation:
    """Quality of one model on one split, with the label-free fidelity figures beside it."""

    split: str
    samples: int
    measure: str
    quality: float
    top1: float | None = None
    agreement: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_outputs(
    outputs: Outputs,
    reference: Outputs | None,
    labels: np.ndarray | None,
    measure: QualityMeasure,
    split: str,
) -> Evaluation:
    """Every figure that applies; `quality` is the measure's."""
    top1 = agreement = cosine = noise_db = None
    classifier = _classifier_output(outputs)
    if labels is not None and classifier is not None:
        top1 = float(np.mean(_scores(outputs[classifier]).argmax(-1)[:, 0] == labels[: len(outputs[classifier])]))
    if reference is not None:
        cosine = mean_cosine(outputs, reference)
        noise_db = sqnr(outputs, reference)
        if measure.name == "agreement" or (classifier is not None and (len(outputs) == 1 or labels is not None)):
            index = measure.output if measure.name == "agreement" else classifier
            assert index is not None
            agreement = float(np.mean(_scores(outputs[index]).argmax(-1) == _scores(reference[index]).argmax(-1)))
    quality = measure.score(outputs, reference, labels)
    return Evaluation(split, len(outputs[0]), measure.name, quality, top1, agreement, cosine, noise_db)


def sqnr(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Signal-to-quantization-noise ratio of all outputs against the float model's, in dB."""
    noise = sum(
        float(np.sum(np.square(r.astype(np.float64) - o.astype(np.float64)))) for o, r in zip(outputs, reference)
    )
    signal = sum(float(np.sum(np.square(r.astype(np.float64)))) for r in reference)
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
